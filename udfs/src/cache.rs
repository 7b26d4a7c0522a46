//! Finding, verifying and loading models, once per process.
//!
//! [`ModelLoader`] reads a package from whatever object store its URL names (through a
//! [`StoreResolver`] the engine provides), verifies its SHA-256 against the pin, and loads the
//! runtime. Loaded models live in a process-wide cache keyed by package hash and device, so every
//! partition of every query in a process shares one copy, and a package is never loaded twice even
//! when many partitions ask for it at the same moment.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use candle_core::Device;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use tokio::sync::OnceCell;
use url::Url;

use crate::catalog::{ModelRef, ScorchOptions};
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

    /// The resolver for a session whose job gives `stores` (the opaque `scorch.stores` option),
    /// when it differs from this one: how a remote process reaches the job's stores with the
    /// job's options. `None` keeps this resolver.
    fn for_session(&self, _stores: &str) -> Option<Arc<dyn StoreResolver>> {
        None
    }
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

/// A cached package whose files still hash to `sha256`, read under its original `uri`.
fn read_cached(dir: &Path, sha256: &str, uri: &str) -> Option<ModelPackage> {
    let folder = dir.join(sha256.to_ascii_lowercase());
    if !folder.is_dir() {
        return None;
    }
    let files = crate::package::read_local_dir(&folder).ok()?;
    match ModelPackage::try_from_files(uri, files) {
        Ok(p) if p.sha256.eq_ignore_ascii_case(sha256) => Some(p),
        _ => {
            tracing::warn!(folder = %folder.display(), "cached package does not match its hash; fetching it again");
            let _ = std::fs::remove_dir_all(&folder);
            None
        }
    }
}

/// Writes a package into the cache atomically: into a temporary sibling, then renamed.
fn write_cached(dir: &Path, package: &ModelPackage) -> std::io::Result<()> {
    let target = dir.join(&package.sha256);
    if target.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    let temp = dir.join(format!(".{}.{}", package.sha256, std::process::id()));
    for (relative, bytes) in &package.files {
        let path = temp.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, bytes)?;
    }
    match std::fs::rename(&temp, &target) {
        Ok(()) => Ok(()),
        // Another process cached it first.
        Err(_) if target.is_dir() => std::fs::remove_dir_all(&temp),
        Err(e) => Err(e),
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

/// Where a package came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackageSource {
    /// Read in place from the local filesystem.
    Local,
    /// Found in the local model cache, verified by its hash.
    Cache,
    /// Downloaded from its object store (and cached when a cache folder is set).
    Store,
}

/// The default folder of the local model cache: `$SCORCH_CACHE_DIR/models`, else
/// `$XDG_CACHE_HOME/scorch/models`, else `~/.cache/scorch/models`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SCORCH_CACHE_DIR") {
        return Some(PathBuf::from(dir).join("models"));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("scorch").join("models"));
    }
    std::env::var_os("HOME").map(|home| {
        PathBuf::from(home)
            .join(".cache")
            .join("scorch")
            .join("models")
    })
}

/// Reads, verifies and loads models; cheap to clone and share.
#[derive(Debug, Clone)]
pub struct ModelLoader {
    resolver: Arc<dyn StoreResolver>,
    device: Device,
    cache_dir: Option<PathBuf>,
}

impl ModelLoader {
    /// A loader reading packages through `resolver` and running models on `device`.
    pub fn try_new(resolver: Arc<dyn StoreResolver>, device: DeviceSpec) -> Result<Self> {
        Ok(Self {
            resolver,
            device: crate::device::shared_device(device)?,
            cache_dir: default_cache_dir(),
        })
    }

    /// This loader as a session's options ask: the job's device and stores, as they travel
    /// with a plan to processes that never saw the job. Cheap when nothing differs.
    pub fn for_session(&self, options: &ScorchOptions) -> Result<Self> {
        let mut loader = self.clone();
        if let Some(device) = &options.device {
            let device = crate::device::shared_device(device.parse()?)?;
            if device.location() != self.device.location() {
                loader.device = device;
            }
        }
        if let Some(stores) = &options.stores
            && let Some(resolver) = self.resolver.for_session(stores)
        {
            loader.resolver = resolver;
        }
        Ok(loader)
    }

    /// Uses `dir` as the local cache of packages fetched from object stores (`None`: no cache).
    pub fn with_cache_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.cache_dir = dir;
        self
    }

    /// The package at `uri`, verified against `pin` when one is given.
    ///
    /// Packages on object stores are cached locally under their hash: a pinned package found in
    /// the cache (and still hashing to its pin) is used without contacting the store; any other
    /// is downloaded, verified, and cached for later runs and other processes.
    pub async fn fetch_verified(
        &self,
        name: &str,
        uri: &str,
        pin: Option<&str>,
    ) -> Result<(ModelPackage, PackageSource)> {
        let remote = !uri.starts_with("file:");
        if remote
            && let (Some(pin), Some(dir)) = (pin, &self.cache_dir)
            && let Some(package) = read_cached(dir, pin, uri)
        {
            tracing::info!(
                model = name,
                sha256 = pin,
                "model package found in the local cache"
            );
            return Ok((package, PackageSource::Cache));
        }
        let package = self.fetch(uri).await?;
        if let Some(pin) = pin {
            package.verify(name, pin)?;
        }
        if !remote {
            return Ok((package, PackageSource::Local));
        }
        if let Some(dir) = &self.cache_dir
            && let Err(e) = write_cached(dir, &package)
        {
            tracing::warn!(model = name, error = %e, "could not cache the model package locally");
        }
        Ok((package, PackageSource::Store))
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
    /// Concurrent misses for one package wait for a single fetch and load.
    pub async fn load(&self, model: &ModelRef) -> Result<Arc<dyn Model>> {
        let slot = slot(&model.sha256, &self.device);
        slot.get_or_try_init(|| async {
            let (package, _) = self
                .fetch_verified(&model.name, &model.uri, Some(&model.sha256))
                .await?;
            LOADS.fetch_add(1, Ordering::Relaxed);
            let loaded: Arc<dyn Model> =
                Arc::from(runtime::try_load(&model.name, &package, &self.device)?);
            tracing::info!(model = %model.name, sha256 = %package.sha256, "model loaded");
            Ok::<_, Error>(loaded)
        })
        .await
        .cloned()
    }

    /// [`Self::load`] for synchronous callers (scalar functions run inside DataFusion's tokio
    /// runtime and cannot await): a cache hit returns at once. A miss inside a multi-threaded
    /// runtime waits in place ([`tokio::task::block_in_place`]: the worker's other tasks move to
    /// other workers); elsewhere it waits on a helper thread with its own runtime.
    pub fn load_blocking(&self, model: &ModelRef) -> Result<Arc<dyn Model>> {
        if let Some(loaded) = slot(&model.sha256, &self.device).get() {
            return Ok(Arc::clone(loaded));
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current()
            && handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        {
            return tokio::task::block_in_place(|| handle.block_on(self.load(model)));
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Reads local packages and counts how often a package is fetched.
    #[derive(Debug, Default)]
    struct Counting {
        fetches: AtomicUsize,
    }

    impl StoreResolver for Counting {
        fn resolve(&self, url: &Url) -> Result<(Arc<dyn ObjectStore>, ObjectPath)> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            LocalResolver.resolve(url)
        }
    }

    #[test]
    fn concurrent_misses_fetch_and_load_a_package_once() {
        // A package of its own (an extra file changes its hash), so no other test loaded it.
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/mlp/models/classifier");
        let dir = tempfile::TempDir::new().expect("temp");
        for entry in std::fs::read_dir(&fixture).expect("fixture") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
        }
        std::fs::write(
            dir.path().join("notes.txt"),
            format!("{:?}", std::time::SystemTime::now()),
        )
        .expect("write");
        let uri = Url::from_directory_path(dir.path())
            .expect("absolute")
            .to_string();

        let probe = ModelLoader::try_new(Arc::new(LocalResolver), DeviceSpec::Cpu).expect("cpu");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let package = runtime.block_on(probe.fetch(&uri)).expect("package");
        let model = ModelRef::from_package("m", &package);

        let counting = Arc::new(Counting::default());
        let loader = ModelLoader::try_new(Arc::clone(&counting) as _, DeviceSpec::Cpu)
            .expect("cpu")
            .with_cache_dir(None);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| loader.load_blocking(&model).expect("loads"));
            }
        });
        assert_eq!(counting.fetches.load(Ordering::SeqCst), 1, "one fetch");
    }
}
