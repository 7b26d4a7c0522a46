//! Finding, verifying and loading models, once per process.
//!
//! [`ModelLoader`] reads a package from whatever object store its URL names (through a
//! [`StoreResolver`] the engine provides), verifies its SHA-256 against the pin, and loads the
//! runtime. Loaded models live in a process-wide cache keyed by package hash and device, so every
//! partition of every query in a process shares one copy, and a package is never loaded twice even
//! when many partitions ask for it at the same moment.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use candle_core::Device;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use tokio::sync::OnceCell;
use url::Url;

use crate::catalog::ModelRef;
use crate::device::DeviceSpec;
use crate::error::{Error, Result};
use crate::package::ModelPackage;
use crate::runtime::{self, Model};

/// Maps a package URL to the object store holding it and the path inside that store.
///
/// The engine implements this over its store registry (credentials, endpoints, retries); the
/// crate's own [`LocalResolver`] handles `file://` URLs only.
pub trait StoreResolver: Send + Sync + fmt::Debug {
    /// The store and the path of `url` in it.
    fn resolve(&self, url: &Url) -> Result<(Arc<dyn ObjectStore>, ObjectPath)>;
}

/// Resolves `file://` URLs on the local filesystem.
#[derive(Debug, Default)]
pub struct LocalResolver;

impl StoreResolver for LocalResolver {
    fn resolve(&self, url: &Url) -> Result<(Arc<dyn ObjectStore>, ObjectPath)> {
        if url.scheme() != "file" {
            return Err(Error::NoStore {
                uri: url.to_string(),
                reason: "only file:// URLs can be read without the engine's store registry"
                    .to_string(),
            });
        }
        let path = ObjectPath::from_url_path(url.path()).map_err(|e| Error::NoStore {
            uri: url.to_string(),
            reason: e.to_string(),
        })?;
        Ok((Arc::new(LocalFileSystem::new()), path))
    }
}

type Slot = Arc<OnceCell<Arc<dyn Model>>>;

static CACHE: LazyLock<Mutex<HashMap<(String, String), Slot>>> = LazyLock::new(Default::default);
static LOADS: AtomicU64 = AtomicU64::new(0);

/// How many models this process has loaded (not served from the cache) so far.
pub fn loads() -> u64 {
    LOADS.load(Ordering::Relaxed)
}

fn slot(sha256: &str, device: &Device) -> Slot {
    let key = (
        sha256.to_ascii_lowercase(),
        format!("{:?}", device.location()),
    );
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Arc::clone(cache.entry(key).or_default())
}

/// Reads, verifies and loads models; cheap to clone and share.
#[derive(Debug, Clone)]
pub struct ModelLoader {
    resolver: Arc<dyn StoreResolver>,
    device: Device,
}

impl ModelLoader {
    /// A loader reading packages through `resolver` and running models on `device`.
    pub fn try_new(resolver: Arc<dyn StoreResolver>, device: DeviceSpec) -> Result<Self> {
        Ok(Self {
            resolver,
            device: device.try_device()?,
        })
    }

    /// The device models run on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Reads the package at `uri` into memory (no verification: see [`ModelPackage::verify`]).
    pub async fn fetch(&self, uri: &str) -> Result<ModelPackage> {
        let url = Url::parse(uri).map_err(|e| Error::NoStore {
            uri: uri.to_string(),
            reason: format!("not a URL: {e}"),
        })?;
        let (store, prefix) = self.resolver.resolve(&url)?;
        ModelPackage::try_read(store, &prefix, uri).await
    }

    /// Loads a package that was already read and verified, under its SQL `name`.
    pub async fn load_package(&self, name: &str, package: &ModelPackage) -> Result<Arc<dyn Model>> {
        let slot = slot(&package.sha256, &self.device);
        slot.get_or_try_init(|| async {
            LOADS.fetch_add(1, Ordering::Relaxed);
            let model: Arc<dyn Model> = Arc::from(runtime::try_load(name, package, &self.device)?);
            tracing::info!(model = name, sha256 = %package.sha256, "model loaded");
            Ok::<_, Error>(model)
        })
        .await
        .cloned()
    }

    /// The model a catalog entry refers to: from the cache, or fetched, verified and loaded.
    pub async fn load(&self, model: &ModelRef) -> Result<Arc<dyn Model>> {
        let slot = slot(&model.sha256, &self.device);
        if let Some(loaded) = slot.get() {
            return Ok(Arc::clone(loaded));
        }
        let package = self.fetch(&model.uri).await?;
        package.verify(&model.name, &model.sha256)?;
        self.load_package(&model.name, &package).await
    }

    /// [`Self::load`] for synchronous callers (scalar functions run inside DataFusion's tokio
    /// runtime and cannot await): a cache hit returns at once; a miss fetches on a helper thread
    /// with its own runtime, once per process and package.
    pub fn load_blocking(&self, model: &ModelRef) -> Result<Arc<dyn Model>> {
        if let Some(loaded) = slot(&model.sha256, &self.device).get() {
            return Ok(Arc::clone(loaded));
        }
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|source| Error::Io {
                            path: "tokio runtime".into(),
                            source,
                        })?;
                    runtime.block_on(self.load(model))
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}
