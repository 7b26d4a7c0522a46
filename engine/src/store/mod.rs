//! The object-store registry: one store per `scheme://bucket`, built from the URL, the
//! environment's credentials and the job's `[stores]` options, shared by sources, outputs and
//! model packages, and metered.
//!
//! - [`location`]: URLs and paths of folders in any store;
//! - [`options`]: per-store options and retry settings;
//! - [`metered`]: request and byte counters around every store.
//!
//! Credentials come from each cloud's standard environment variables and files (`AWS_*` and
//! instance metadata for S3; `GOOGLE_SERVICE_ACCOUNT*` / `GOOGLE_APPLICATION_CREDENTIALS` for
//! GCS; `AZURE_STORAGE_*` for Azure). They are never logged: option values whose name suggests a
//! secret are redacted wherever options are printed.

pub mod location;
pub mod metered;
pub mod options;

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, LazyLock, RwLock};

use datafusion::execution::runtime_env::RuntimeEnv;
use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use url::Url;

use crate::error::{Error, Result};
use crate::store::location::Location;
use crate::store::metered::{IoCounters, IoStats, MeteredStore};

use options::{RETRY_KEYS, retry_config};
pub use options::{StoreOptions, is_secret, parse_duration};

/// The process's in-memory store: `memory://` URLs from any registry see the same objects.
static MEMORY: LazyLock<Arc<InMemory>> = LazyLock::new(|| Arc::new(InMemory::new()));

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

impl StoreRegistry {
    /// The registry of a process for `options`, shared by every session that carries the same
    /// options (so stores and their connections are built once per process and job options).
    pub fn shared(options: StoreOptions) -> Arc<StoreRegistry> {
        static SHARED: LazyLock<RwLock<HashMap<String, Arc<StoreRegistry>>>> =
            LazyLock::new(Default::default);
        let key = options.to_json();
        if let Some(registry) = SHARED.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Arc::clone(registry);
        }
        let mut shared = SHARED.write().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            shared
                .entry(key)
                .or_insert_with(|| Arc::new(StoreRegistry::with_options(options))),
        )
    }

    /// The registry for a session's configuration: the job's store options when the
    /// configuration carries them (`scorch.stores`), else the defaults.
    pub fn for_config(config: &datafusion::config::ConfigOptions) -> Arc<StoreRegistry> {
        let options = scorch_udfs::ScorchOptions::in_config(config)
            .and_then(|o| o.stores.as_deref())
            .and_then(StoreOptions::from_json)
            .unwrap_or_default();
        Self::shared(options)
    }
}

impl scorch_udfs::StoreResolver for StoreRegistry {
    fn for_session(&self, stores: &str) -> Option<Arc<dyn scorch_udfs::StoreResolver>> {
        let options = StoreOptions::from_json(stores)?;
        (options != self.options)
            .then(|| Self::shared(options) as Arc<dyn scorch_udfs::StoreResolver>)
    }

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
