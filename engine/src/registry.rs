//! A model registry on any object store, with no server: immutable versions and movable aliases.
//!
//! ```text
//! <registry>/<name>/<version>/…                   the package's files, as published
//! <registry>/<name>/_versions/<version>.json      the version's record (SHA-256, time, files):
//!                                                 created if absent, after the files — the
//!                                                 commit point of a publish
//! <registry>/<name>/_aliases/<alias>/<seq>.json   each move of an alias (version, SHA-256,
//!                                                 time), numbered from 1
//! ```
//!
//! A version is never rewritten: publishing other bytes under an existing version is refused,
//! the same bytes again is a no-op. An alias moves by creating its next numbered record with a
//! create-if-absent write, the same trick as a commit log: of two promotions that read the same
//! latest record, exactly one creates the next one and the other gets a conflict. The newest
//! record is the alias; the records are its history, and a rollback is one more promotion.
//! A job names `registry`, `name` and an `alias` or `version`; the reference resolves once, at
//! plan time, to a version and its SHA-256, which the run pins and sends to every executor.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use scorch_udfs::ModelPackage;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::process::failpoint;
use crate::store::location::Location;

/// Which version of a registered model a job wants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selector {
    /// Whatever version the alias names when the run plans.
    Alias(String),
    /// One version.
    Version(String),
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::Alias(a) => write!(f, "alias {a}"),
            Selector::Version(v) => write!(f, "version {v}"),
        }
    }
}

/// A published version's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// Model name.
    pub name: String,
    /// Version (the package manifest's).
    pub version: String,
    /// The package's SHA-256.
    pub sha256: String,
    /// When it was published.
    pub published_at: DateTime<Utc>,
    /// The package's files.
    pub files: Vec<String>,
}

/// One move of an alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasRecord {
    /// Model name.
    pub name: String,
    /// The alias.
    pub alias: String,
    /// Its position in the alias' history, from 1.
    pub seq: u64,
    /// The version it names from now on.
    pub version: String,
    /// That version's SHA-256.
    pub sha256: String,
    /// When.
    pub promoted_at: DateTime<Utc>,
}

/// A reference resolved to one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The package folder.
    pub location: Location,
    /// Version.
    pub version: String,
    /// SHA-256 the run pins.
    pub sha256: String,
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    /// The version's record.
    pub record: VersionRecord,
    /// The package folder in the registry.
    pub location: String,
    /// False when the same bytes were already published under this version.
    pub created: bool,
}

/// A model in the registry: its versions and where its aliases point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelEntry {
    /// Model name.
    pub name: String,
    /// Published versions, oldest first.
    pub versions: Vec<VersionRecord>,
    /// Each alias' current record.
    pub aliases: BTreeMap<String, AliasRecord>,
}

/// One event of a model's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HistoryEvent {
    /// A version was published.
    Published(VersionRecord),
    /// An alias moved.
    Promoted(AliasRecord),
}

impl HistoryEvent {
    fn at(&self) -> DateTime<Utc> {
        match self {
            HistoryEvent::Published(r) => r.published_at,
            HistoryEvent::Promoted(r) => r.promoted_at,
        }
    }
}

/// A registry at a folder of an object store.
pub struct Registry {
    location: Location,
    store: Arc<dyn ObjectStore>,
}

fn check_segment(what: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && !value.starts_with(['_', '.'])
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'));
    if ok {
        Ok(())
    } else {
        Err(Error::Registry {
            registry: String::new(),
            message: format!(
                "{what} `{value}`: use letters, digits, `-`, `_`, `.` and `+`, not starting with \
                 `_` or `.`"
            ),
        })
    }
}

impl Registry {
    /// The registry at `location`.
    pub fn new(location: Location, store: Arc<dyn ObjectStore>) -> Self {
        Self { location, store }
    }

    fn error(&self, message: String) -> Error {
        Error::Registry {
            registry: self.location.to_string(),
            message,
        }
    }

    fn storage(
        &self,
        action: &'static str,
        path: &ObjectPath,
    ) -> impl Fn(object_store::Error) -> Error {
        let location = format!("{}{}", self.location.store_url().as_str(), path);
        move |source| Error::Storage {
            action,
            location: location.clone(),
            source,
        }
    }

    fn version_record_path(&self, name: &str, version: &str) -> ObjectPath {
        self.location
            .child(&format!("{name}/_versions/{version}.json"))
    }

    /// The package folder of `name` `version`.
    pub fn package_location(&self, name: &str, version: &str) -> Location {
        self.location.join(&format!("{name}/{version}"))
    }

    async fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        path: &ObjectPath,
    ) -> Result<Option<T>> {
        match self.store.get(path).await {
            Ok(r) => {
                let bytes = r.bytes().await.map_err(self.storage("read", path))?;
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| self.error(format!("{path} is not a registry record: {e}")))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.storage("read", path)(e)),
        }
    }

    async fn list(&self, prefix: &ObjectPath) -> Result<Vec<ObjectPath>> {
        let listed: Vec<_> = self
            .store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(self.storage("list", prefix))?;
        Ok(listed.into_iter().map(|m| m.location).collect())
    }

    /// Writes `record` at `path` unless something is there: the registry's one commit primitive.
    async fn create_record<T: Serialize>(
        &self,
        path: &ObjectPath,
        record: &T,
    ) -> object_store::Result<object_store::PutResult> {
        let body = serde_json::to_vec_pretty(record).expect("a record always serialises");
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.store
            .put_opts(path, PutPayload::from(body), options)
            .await
    }

    /// The record of `name` `version`, when published.
    pub async fn version(&self, name: &str, version: &str) -> Result<Option<VersionRecord>> {
        self.read_json(&self.version_record_path(name, version))
            .await
    }

    /// Copies `package` to `name/version/` and records the version, unless that version exists:
    /// with the same bytes it is a no-op, with others it is refused.
    pub async fn publish(&self, package: &ModelPackage) -> Result<Published> {
        let name = package.manifest.name.clone();
        let version = package.manifest.version.to_string();
        check_segment("model name", &name)?;
        check_segment("version", &version)?;
        let folder = self.package_location(&name, &version);
        if let Some(record) = self.version(&name, &version).await? {
            return self.already(record, package, &folder);
        }
        // No record: whatever is under the folder is an interrupted publish, never read.
        for path in self.list(&folder.path()).await? {
            self.store
                .delete(&path)
                .await
                .map_err(self.storage("delete", &path))?;
        }
        for (relative, bytes) in &package.files {
            let path = folder.child(relative);
            self.store
                .put(&path, PutPayload::from(Bytes::clone(bytes)))
                .await
                .map_err(self.storage("write", &path))?;
        }
        failpoint::hit("publish-files-written");
        let record = VersionRecord {
            name: name.clone(),
            version: version.clone(),
            sha256: package.sha256.clone(),
            published_at: Utc::now(),
            files: package.files.keys().cloned().collect(),
        };
        let path = self.version_record_path(&name, &version);
        match self.create_record(&path, &record).await {
            Ok(_) => Ok(Published {
                record,
                location: folder.to_string(),
                created: true,
            }),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let Some(theirs) = self.version(&name, &version).await? else {
                    return Err(self.error(format!("the record of {name} {version} vanished")));
                };
                self.already(theirs, package, &folder)
            }
            Err(e) => Err(self.storage("write", &path)(e)),
        }
    }

    fn already(
        &self,
        record: VersionRecord,
        package: &ModelPackage,
        folder: &Location,
    ) -> Result<Published> {
        if record.sha256 != package.sha256 {
            return Err(self.error(format!(
                "{} {} is already published with sha256 {}; this package's is {}: a version \
                 never changes, publish these bytes under a new version (raise `version` in \
                 model.toml)",
                record.name, record.version, record.sha256, package.sha256
            )));
        }
        Ok(Published {
            record,
            location: folder.to_string(),
            created: false,
        })
    }

    /// Every move of `alias` of `name`, oldest first.
    pub async fn alias_history(&self, name: &str, alias: &str) -> Result<Vec<AliasRecord>> {
        let prefix = self.location.child(&format!("{name}/_aliases/{alias}"));
        let mut paths = self.list(&prefix).await?;
        paths.sort();
        let mut records = Vec::new();
        for path in paths {
            if let Some(record) = self.read_json::<AliasRecord>(&path).await? {
                records.push(record);
            }
        }
        records.sort_by_key(|r| r.seq);
        Ok(records)
    }

    /// Points `alias` of `name` at `version` (which must be published). Two promotions racing
    /// for the same alias: one wins, the other is [`Error::RegistryConflict`].
    pub async fn promote(&self, name: &str, version: &str, alias: &str) -> Result<AliasRecord> {
        check_segment("model name", name)?;
        check_segment("alias", alias)?;
        let Some(target) = self.version(name, version).await? else {
            let known: Vec<String> = self
                .versions(name)
                .await?
                .into_iter()
                .map(|r| r.version)
                .collect();
            return Err(self.error(format!(
                "{name} {version} is not published (published: {}); publish it first",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        };
        let latest = self.alias_history(name, alias).await?.pop();
        failpoint::hit("promote");
        let seq = latest.as_ref().map_or(1, |r| r.seq + 1);
        let record = AliasRecord {
            name: name.to_string(),
            alias: alias.to_string(),
            seq,
            version: target.version,
            sha256: target.sha256,
            promoted_at: Utc::now(),
        };
        let path = self
            .location
            .child(&format!("{name}/_aliases/{alias}/{seq:020}.json"));
        match self.create_record(&path, &record).await {
            Ok(_) => Ok(record),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let now = self.alias_history(name, alias).await?.pop();
                Err(Error::RegistryConflict {
                    registry: self.location.to_string(),
                    alias: format!("{name}@{alias}"),
                    now: now.map_or_else(|| "unknown".into(), |r| r.version),
                })
            }
            Err(e) => Err(self.storage("write", &path)(e)),
        }
    }

    /// Published versions of `name`, oldest first.
    pub async fn versions(&self, name: &str) -> Result<Vec<VersionRecord>> {
        let prefix = self.location.child(&format!("{name}/_versions"));
        let mut records = Vec::new();
        for path in self.list(&prefix).await? {
            if let Some(record) = self.read_json::<VersionRecord>(&path).await? {
                records.push(record);
            }
        }
        records.sort_by_key(|r| r.published_at);
        Ok(records)
    }

    /// The version `selector` names now.
    pub async fn resolve(&self, name: &str, selector: &Selector) -> Result<Resolved> {
        let (version, sha256) = match selector {
            Selector::Version(v) => match self.version(name, v).await? {
                Some(r) => (r.version, r.sha256),
                None => {
                    return Err(self.error(format!(
                        "{name} {v} is not published; `scorch model list --registry {}` shows what is",
                        self.location
                    )));
                }
            },
            Selector::Alias(a) => match self.alias_history(name, a).await?.pop() {
                Some(r) => (r.version, r.sha256),
                None => {
                    return Err(self.error(format!(
                        "{name} has no alias `{a}`; promote a version to it: scorch model \
                         promote {name}@<version> --alias {a} --registry {}",
                        self.location
                    )));
                }
            },
        };
        Ok(Resolved {
            location: self.package_location(name, &version),
            version,
            sha256,
        })
    }

    /// Every model: versions and current aliases.
    pub async fn models(&self) -> Result<Vec<ModelEntry>> {
        let listed = self
            .store
            .list_with_delimiter(Some(&self.location.path()))
            .await
            .map_err(self.storage("list", &self.location.path()))?;
        let mut entries = Vec::new();
        for prefix in listed.common_prefixes {
            let Some(name) = prefix.filename().map(str::to_string) else {
                continue;
            };
            entries.push(self.model(&name).await?);
        }
        Ok(entries)
    }

    /// One model: versions and current aliases.
    pub async fn model(&self, name: &str) -> Result<ModelEntry> {
        let versions = self.versions(name).await?;
        let mut aliases = BTreeMap::new();
        let prefix = self.location.child(&format!("{name}/_aliases"));
        let listed = self
            .store
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(self.storage("list", &prefix))?;
        for alias in listed.common_prefixes {
            let Some(alias) = alias.filename().map(str::to_string) else {
                continue;
            };
            if let Some(record) = self.alias_history(name, &alias).await?.pop() {
                aliases.insert(alias, record);
            }
        }
        Ok(ModelEntry {
            name: name.to_string(),
            versions,
            aliases,
        })
    }

    /// What happened to `name`: publishes and alias moves, oldest first.
    pub async fn history(&self, name: &str) -> Result<Vec<HistoryEvent>> {
        let entry = self.model(name).await?;
        if entry.versions.is_empty() {
            return Err(self.error(format!("no model `{name}` is published here")));
        }
        let mut events: Vec<HistoryEvent> = entry
            .versions
            .into_iter()
            .map(HistoryEvent::Published)
            .collect();
        for alias in entry.aliases.keys() {
            events.extend(
                self.alias_history(name, alias)
                    .await?
                    .into_iter()
                    .map(HistoryEvent::Promoted),
            );
        }
        events.sort_by_key(HistoryEvent::at);
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_escape_or_hide_are_refused() {
        for bad in ["", "_versions", ".x", "a/b", "a b"] {
            assert!(check_segment("alias", bad).is_err(), "{bad:?}");
        }
        for good in ["champion", "2.1.0", "1.0.0+build.5", "churn_v2"] {
            assert!(check_segment("alias", good).is_ok(), "{good:?}");
        }
    }
}
