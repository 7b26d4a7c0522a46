//! The object-store registry: one store per `scheme://bucket`, built from the URL and the
//! environment's credentials, shared by sources, outputs and model packages.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use datafusion::execution::runtime_env::RuntimeEnv;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use url::Url;

use crate::error::{Error, Result};
use crate::location::Location;

/// The process's in-memory store: `memory://` URLs from any registry see the same objects.
static MEMORY: LazyLock<Arc<InMemory>> = LazyLock::new(|| Arc::new(InMemory::new()));

/// Builds and caches object stores by `scheme://authority`.
#[derive(Debug, Default)]
pub struct StoreRegistry {
    stores: RwLock<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl StoreRegistry {
    /// An empty registry; stores are built on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// The store holding `location`.
    pub fn store(&self, location: &Location) -> Result<Arc<dyn ObjectStore>> {
        self.store_for_url(location.url())
    }

    fn store_for_url(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        let key = store_key(url);
        if let Some(store) = self
            .stores
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(Arc::clone(store));
        }
        let store = build_store(url)?;
        let mut stores = self.stores.write().unwrap_or_else(|p| p.into_inner());
        Ok(Arc::clone(stores.entry(key).or_insert(store)))
    }

    /// Registers the store of `location` with a DataFusion runtime, so that listing tables and
    /// sinks on that location use the same store (and credentials) as scorch itself.
    pub fn register_with(&self, runtime: &RuntimeEnv, location: &Location) -> Result<()> {
        let store = self.store(location)?;
        let store_url = location.store_url();
        runtime.register_object_store(store_url.as_ref(), store);
        Ok(())
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

fn store_key(url: &Url) -> String {
    format!(
        "{}://{}",
        url.scheme(),
        &url[url::Position::BeforeHost..url::Position::AfterPort]
    )
}

fn build_store(url: &Url) -> Result<Arc<dyn ObjectStore>> {
    let failed = |source: object_store::Error| Error::Storage {
        action: "configure store for",
        location: store_key(url),
        source,
    };
    Ok(match url.scheme() {
        "file" => Arc::new(LocalFileSystem::new()),
        "memory" => Arc::clone(&*MEMORY) as Arc<dyn ObjectStore>,
        "s3" | "s3a" => Arc::new(
            AmazonS3Builder::from_env()
                .with_url(url.as_str())
                .build()
                .map_err(failed)?,
        ),
        "gs" => Arc::new(
            GoogleCloudStorageBuilder::from_env()
                .with_url(url.as_str())
                .build()
                .map_err(failed)?,
        ),
        "az" | "abfs" | "abfss" => Arc::new(
            MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .build()
                .map_err(failed)?,
        ),
        other => {
            return Err(Error::Location {
                location: url.to_string(),
                message: format!("no object store for scheme `{other}`"),
            });
        }
    })
}
