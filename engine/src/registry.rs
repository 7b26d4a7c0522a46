//! The object-store registry: one store per `scheme://bucket`, built from the URL, the
//! environment's credentials and the job's `[stores]` options, shared by sources, outputs and
//! model packages, and metered.
//!
//! Credentials come from each cloud's standard environment variables and files (`AWS_*` and
//! instance metadata for S3; `GOOGLE_SERVICE_ACCOUNT*` / `GOOGLE_APPLICATION_CREDENTIALS` for
//! GCS; `AZURE_STORAGE_*` for Azure). They are never logged: option values whose name suggests a
//! secret are redacted wherever options are printed.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use datafusion::execution::runtime_env::RuntimeEnv;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};
use url::Url;

use crate::error::{Error, Result};
use crate::location::Location;
use crate::metered::{IoCounters, IoStats, MeteredStore};

/// The process's in-memory store: `memory://` URLs from any registry see the same objects.
static MEMORY: LazyLock<Arc<InMemory>> = LazyLock::new(|| Arc::new(InMemory::new()));

/// Retry options scorch itself understands (the rest go to the store's builder).
const RETRY_KEYS: [&str; 4] = [
    "max_retries",
    "retry_timeout",
    "init_backoff",
    "max_backoff",
];

/// Environment variables that set retry options for every store, below the job file's.
const RETRY_ENV: [(&str, &str); 4] = [
    ("max_retries", "SCORCH_STORE_MAX_RETRIES"),
    ("retry_timeout", "SCORCH_STORE_RETRY_TIMEOUT"),
    ("init_backoff", "SCORCH_STORE_INIT_BACKOFF"),
    ("max_backoff", "SCORCH_STORE_MAX_BACKOFF"),
];

/// Client options that can also come from the environment for every store.
const CLIENT_ENV: [(&str, &str); 2] = [
    ("timeout", "SCORCH_STORE_TIMEOUT"),
    ("connect_timeout", "SCORCH_STORE_CONNECT_TIMEOUT"),
];

/// Options for the stores a job uses, from `[stores.<scheme>]` (every bucket of a scheme) and
/// `[stores."<scheme>://<bucket>"]` (one bucket; wins over the scheme's).
#[derive(Clone, Default, PartialEq)]
pub struct StoreOptions {
    entries: BTreeMap<String, BTreeMap<String, String>>,
}

impl fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted: BTreeMap<&String, BTreeMap<&String, &str>> = self
            .entries
            .iter()
            .map(|(k, opts)| {
                (
                    k,
                    opts.iter()
                        .map(|(o, v)| (o, if is_secret(o) { "***" } else { v.as_str() }))
                        .collect(),
                )
            })
            .collect();
        f.debug_struct("StoreOptions")
            .field("entries", &redacted)
            .finish()
    }
}

/// Whether an option's value must never be printed.
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "secret",
        "key",
        "token",
        "password",
        "sas",
        "credential",
        "signature",
    ]
    .iter()
    .any(|s| k.contains(s))
        && !k.ends_with("_path")
}

impl StoreOptions {
    /// Checks and adds the options for `target` (`s3`, or `s3://bucket`).
    pub fn try_insert(
        &mut self,
        target: &str,
        options: BTreeMap<String, String>,
    ) -> std::result::Result<(), String> {
        let scheme = target.split("://").next().unwrap_or(target);
        for (key, value) in &options {
            if RETRY_KEYS.contains(&key.as_str()) {
                parse_retry_value(key, value)?;
                continue;
            }
            let known = match scheme {
                "s3" | "s3a" => AmazonS3ConfigKey::from_str(key).is_ok(),
                "gs" => GoogleConfigKey::from_str(key).is_ok(),
                "az" | "abfs" | "abfss" => AzureConfigKey::from_str(key).is_ok(),
                "file" | "memory" => false,
                other => {
                    return Err(format!(
                        "`{other}` is not a store scheme (s3, gs, az, abfss)"
                    ));
                }
            };
            if !known {
                return Err(format!("`{key}` is not an option of {scheme} stores"));
            }
        }
        self.entries.insert(target.to_string(), options);
        Ok(())
    }

    /// The options that apply to `url`: the scheme's, then the bucket's on top.
    fn for_url(&self, url: &Url) -> BTreeMap<String, String> {
        let mut merged = BTreeMap::new();
        for (key, env) in RETRY_ENV.iter().chain(CLIENT_ENV.iter()) {
            if let Ok(value) = std::env::var(env) {
                merged.insert((*key).to_string(), value);
            }
        }
        if let Some(o) = self.entries.get(url.scheme()) {
            merged.extend(o.clone());
        }
        if let Some(o) = self.entries.get(&store_key(url)) {
            merged.extend(o.clone());
        }
        merged
    }
}

fn parse_retry_value(key: &str, value: &str) -> std::result::Result<(), String> {
    if key == "max_retries" {
        value
            .parse::<usize>()
            .map(|_| ())
            .map_err(|_| format!("`{key}`: `{value}` is not a count"))
    } else {
        parse_duration(value)
            .map(|_| ())
            .map_err(|e| format!("`{key}`: {e}"))
    }
}

/// Parses `250ms`, `30s`, `5m`, `1h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 30s"))?;
    let seconds = match unit.trim() {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        other => return Err(format!("`{text}`: unknown unit `{other}` (ms, s, m, h, d)")),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("`{text}` is not a duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A built store and its counters.
type MeteredEntry = (Arc<dyn ObjectStore>, Arc<IoCounters>);

/// Builds, caches and meters object stores by `scheme://authority`.
#[derive(Debug, Default)]
pub struct StoreRegistry {
    options: StoreOptions,
    stores: RwLock<HashMap<String, MeteredEntry>>,
}

impl StoreRegistry {
    /// A registry with default options; stores are built on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry applying `options`.
    pub fn with_options(options: StoreOptions) -> Self {
        Self {
            options,
            stores: RwLock::default(),
        }
    }

    /// The store holding `location`.
    pub fn store(&self, location: &Location) -> Result<Arc<dyn ObjectStore>> {
        self.store_for_url(location.url())
    }

    fn store_for_url(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        let key = store_key(url);
        if let Some((store, _)) = self
            .stores
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(Arc::clone(store));
        }
        let counters = Arc::new(IoCounters::default());
        let store: Arc<dyn ObjectStore> = Arc::new(MeteredStore::new(
            build_store(url, &self.options)?,
            Arc::clone(&counters),
        ));
        let mut stores = self.stores.write().unwrap_or_else(|p| p.into_inner());
        Ok(Arc::clone(
            &stores.entry(key).or_insert((store, counters)).0,
        ))
    }

    /// Registers the store of `location` with a DataFusion runtime, so that listing tables and
    /// sinks on that location use the same store (and credentials) as scorch itself.
    pub fn register_with(&self, runtime: &RuntimeEnv, location: &Location) -> Result<()> {
        let store = self.store(location)?;
        let store_url = location.store_url();
        runtime.register_object_store(store_url.as_ref(), store);
        Ok(())
    }

    /// Requests and bytes per store so far, keyed by `scheme://authority`.
    pub fn io_stats(&self) -> BTreeMap<String, IoStats> {
        self.stores
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, (_, c))| (k.clone(), c.snapshot()))
            .collect()
    }
}

/// DataFusion asks the same registry for stores, so sessions need no stores registered up
/// front: any URL's store is built on first use (cluster processes rely on this).
impl datafusion::execution::object_store::ObjectStoreRegistry for StoreRegistry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        let counters = Arc::new(IoCounters::default());
        let metered: Arc<dyn ObjectStore> =
            Arc::new(MeteredStore::new(store, Arc::clone(&counters)));
        let mut stores = self.stores.write().unwrap_or_else(|p| p.into_inner());
        stores
            .insert(store_key(url), (metered, counters))
            .map(|(previous, _)| previous)
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        self.store_for_url(url)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
    }
}

impl scorch_udfs::StoreResolver for StoreRegistry {
    fn resolve(&self, url: &Url) -> scorch_udfs::Result<(Arc<dyn ObjectStore>, ObjectPath)> {
        let store = self
            .store_for_url(url)
            .map_err(|e| scorch_udfs::Error::NoStore {
                uri: url.to_string(),
                reason: e.to_string(),
            })?;
        let path =
            ObjectPath::from_url_path(url.path()).map_err(|e| scorch_udfs::Error::NoStore {
                uri: url.to_string(),
                reason: e.to_string(),
            })?;
        Ok((store, path))
    }
}

/// `scheme://authority` of a URL.
pub fn store_key(url: &Url) -> String {
    format!(
        "{}://{}",
        url.scheme(),
        &url[url::Position::BeforeHost..url::Position::AfterPort]
    )
}

fn retry_config(options: &BTreeMap<String, String>) -> RetryConfig {
    let mut retry = RetryConfig::default();
    let duration = |k: &str| options.get(k).and_then(|v| parse_duration(v).ok());
    if let Some(n) = options.get("max_retries").and_then(|v| v.parse().ok()) {
        retry.max_retries = n;
    }
    if let Some(d) = duration("retry_timeout") {
        retry.retry_timeout = d;
    }
    let defaults = BackoffConfig::default();
    retry.backoff = BackoffConfig {
        init_backoff: duration("init_backoff").unwrap_or(defaults.init_backoff),
        max_backoff: duration("max_backoff").unwrap_or(defaults.max_backoff),
        base: defaults.base,
    };
    retry
}

fn build_store(url: &Url, options: &StoreOptions) -> Result<Arc<dyn ObjectStore>> {
    let failed = |source: object_store::Error| Error::Storage {
        action: "configure store for",
        location: store_key(url),
        source,
    };
    let opts = options.for_url(url);
    let retry = retry_config(&opts);
    let passthrough = opts
        .iter()
        .filter(|(k, _)| !RETRY_KEYS.contains(&k.as_str()));
    let bad_key = |key: &str| Error::Location {
        location: store_key(url),
        message: format!("`{key}` is not an option of this store"),
    };
    Ok(match url.scheme() {
        "file" => Arc::new(LocalFileSystem::new()),
        "memory" => Arc::clone(&*MEMORY) as Arc<dyn ObjectStore>,
        "s3" | "s3a" => {
            let mut b = AmazonS3Builder::from_env()
                .with_url(url.as_str())
                .with_retry(retry);
            for (k, v) in passthrough {
                b = b.with_config(AmazonS3ConfigKey::from_str(k).map_err(|_| bad_key(k))?, v);
            }
            Arc::new(b.build().map_err(failed)?)
        }
        "gs" => {
            let mut b = GoogleCloudStorageBuilder::from_env()
                .with_url(url.as_str())
                .with_retry(retry);
            for (k, v) in passthrough {
                b = b.with_config(GoogleConfigKey::from_str(k).map_err(|_| bad_key(k))?, v);
            }
            Arc::new(b.build().map_err(failed)?)
        }
        "az" | "abfs" | "abfss" => {
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .with_retry(retry);
            for (k, v) in passthrough {
                b = b.with_config(AzureConfigKey::from_str(k).map_err(|_| bad_key(k))?, v);
            }
            Arc::new(b.build().map_err(failed)?)
        }
        other => {
            return Err(Error::Location {
                location: url.to_string(),
                message: format!("no object store for scheme `{other}`"),
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_per_scheme_and_secrets_are_redacted() {
        let mut o = StoreOptions::default();
        let s3 = BTreeMap::from([
            ("endpoint".to_string(), "http://127.0.0.1:9000".to_string()),
            ("allow_http".to_string(), "true".to_string()),
            ("secret_access_key".to_string(), "hunter2".to_string()),
            ("max_retries".to_string(), "3".to_string()),
            ("retry_timeout".to_string(), "20s".to_string()),
        ]);
        o.try_insert("s3://features", s3).expect("valid s3 options");
        let printed = format!("{o:?}");
        assert!(
            !printed.contains("hunter2")
                && printed.contains("***")
                && printed.contains("127.0.0.1"),
            "{printed}"
        );

        let err = o
            .try_insert(
                "s3",
                BTreeMap::from([("endpiont".to_string(), "x".to_string())]),
            )
            .expect_err("typo");
        assert!(err.contains("endpiont"), "{err}");
        let err = o
            .try_insert(
                "gs",
                BTreeMap::from([("max_retries".to_string(), "many".to_string())]),
            )
            .expect_err("bad count");
        assert!(err.contains("max_retries"), "{err}");
    }

    #[test]
    fn bucket_options_win_over_scheme_options() {
        let mut o = StoreOptions::default();
        o.try_insert(
            "s3",
            BTreeMap::from([("max_retries".to_string(), "1".to_string())]),
        )
        .expect("valid");
        o.try_insert(
            "s3://b",
            BTreeMap::from([("max_retries".to_string(), "7".to_string())]),
        )
        .expect("valid");
        let url = Url::parse("s3://b/x").expect("url");
        assert_eq!(retry_config(&o.for_url(&url)).max_retries, 7);
        let other = Url::parse("s3://c/x").expect("url");
        assert_eq!(retry_config(&o.for_url(&other)).max_retries, 1);
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("250ms").expect("ms"),
            Duration::from_millis(250)
        );
        assert_eq!(parse_duration("3m").expect("m"), Duration::from_secs(180));
        assert_eq!(parse_duration("2").expect("bare"), Duration::from_secs(2));
        assert!(parse_duration("soon").is_err());
    }
}
