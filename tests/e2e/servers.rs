//! Object-store test servers (moto for S3, fake-gcs-server, azurite), started for real by
//! `tests/servers/serve.py`, and a direct client to put fixtures in and read results out.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tempfile::TempDir;

/// A runtime for the tests' own storage calls.
pub static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
});

/// The storage backends of the conformance suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Local,
    S3,
    Gcs,
    Azure,
}

/// A running server (or the local disk), and how to reach it.
pub struct Server {
    pub backend: Backend,
    /// `s3://scorch-test`, `gs://scorch-test`, `az://scorch-test`, or `file:///tmp/...`.
    pub url: String,
    /// The server's HTTP endpoint (empty for the local disk).
    pub endpoint: String,
    /// Environment that points scorch (and object_store) at the server.
    pub env: BTreeMap<String, String>,
    _child: Option<Mutex<Child>>,
    _dir: TempDir,
}

fn start(backend: Backend) -> Server {
    let dir = TempDir::new().expect("temp dir");
    if backend == Backend::Local {
        let root = dir.path().join("bucket");
        std::fs::create_dir_all(&root).expect("mkdir");
        return Server {
            backend,
            url: url::Url::from_directory_path(&root)
                .expect("url")
                .to_string()
                .trim_end_matches('/')
                .to_string(),
            endpoint: String::new(),
            env: BTreeMap::new(),
            _child: None,
            _dir: dir,
        };
    }
    let kind = match backend {
        Backend::S3 => "s3",
        Backend::Gcs => "gcs",
        Backend::Azure => "azure",
        Backend::Local => unreachable!("handled above"),
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/servers/serve.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(kind)
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 starts the test server (run ./scripts/setup)");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("server announces itself");
    let info: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
        panic!("{kind} server did not start ({e}): {line:?}; run ./scripts/setup")
    });
    let env = info["env"]
        .as_object()
        .expect("env")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string").to_string()))
        .collect();
    Server {
        backend,
        url: info["url"].as_str().expect("url").to_string(),
        endpoint: info["endpoint"].as_str().expect("endpoint").to_string(),
        env,
        _child: Some(Mutex::new(child)),
        _dir: dir,
    }
}

/// The shared server of a backend, started on first use and stopped when the tests exit.
pub fn server(backend: Backend) -> &'static Server {
    static LOCAL: OnceLock<Server> = OnceLock::new();
    static S3: OnceLock<Server> = OnceLock::new();
    static GCS: OnceLock<Server> = OnceLock::new();
    static AZURE: OnceLock<Server> = OnceLock::new();
    let cell = match backend {
        Backend::Local => &LOCAL,
        Backend::S3 => &S3,
        Backend::Gcs => &GCS,
        Backend::Azure => &AZURE,
    };
    cell.get_or_init(|| start(backend))
}

impl Server {
    /// A fresh, unique folder URL in the bucket for one test.
    pub fn folder(&self, name: &str) -> String {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}/{name}-{}-{n}", self.url, std::process::id())
    }

    /// A direct client for the bucket.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        match self.backend {
            Backend::Local => Arc::new(LocalFileSystem::new()),
            Backend::S3 => {
                let mut b = AmazonS3Builder::new().with_bucket_name("scorch-test");
                for (k, v) in &self.env {
                    b = b.with_config(
                        AmazonS3ConfigKey::from_str(&k.to_ascii_lowercase()).expect("s3 key"),
                        v,
                    );
                }
                Arc::new(b.build().expect("s3 client"))
            }
            Backend::Gcs => {
                let mut b = GoogleCloudStorageBuilder::new().with_bucket_name("scorch-test");
                for (k, v) in &self.env {
                    b = b.with_config(
                        GoogleConfigKey::from_str(&k.to_ascii_lowercase()).expect("gcs key"),
                        v,
                    );
                }
                Arc::new(b.build().expect("gcs client"))
            }
            Backend::Azure => {
                // The tests' own client talks to the emulator's endpoint directly (scorch is run
                // in emulator mode, which reads the endpoint from AZURITE_BLOB_STORAGE_URL).
                let mut b = MicrosoftAzureBuilder::new()
                    .with_container_name("scorch-test")
                    .with_endpoint(self.endpoint.clone());
                for (k, v) in &self.env {
                    if k.starts_with("AZURITE_") || k == "AZURE_STORAGE_USE_EMULATOR" {
                        continue;
                    }
                    b = b.with_config(
                        AzureConfigKey::from_str(&k.to_ascii_lowercase()).expect("azure key"),
                        v,
                    );
                }
                Arc::new(b.build().expect("azure client"))
            }
        }
    }

    /// The path of a folder URL inside the bucket.
    pub fn path_of(&self, folder_url: &str) -> ObjectPath {
        let url = url::Url::parse(folder_url).expect("folder url");
        ObjectPath::from_url_path(url.path()).expect("path")
    }

    /// Copies a local folder into the bucket under `folder_url`.
    pub fn upload(&self, local: &Path, folder_url: &str) {
        let store = self.store();
        let prefix = self.path_of(folder_url);
        let files = crate::support::snapshot(local);
        RT.block_on(async {
            for (relative, bytes) in files {
                let path = ObjectPath::from_iter(
                    prefix.parts().chain(relative.split('/').map(|p| p.into())),
                );
                store
                    .put(&path, PutPayload::from(bytes))
                    .await
                    .expect("upload");
            }
        });
    }

    /// Relative paths of every object under `folder_url`.
    pub fn list(&self, folder_url: &str) -> Vec<String> {
        let store = self.store();
        let prefix = self.path_of(folder_url);
        let metas: Vec<_> = RT
            .block_on(store.list(Some(&prefix)).try_collect())
            .expect("list");
        let mut out: Vec<String> = metas
            .into_iter()
            .filter_map(|m| {
                m.location.prefix_match(&prefix).map(|parts| {
                    parts
                        .map(|p| p.as_ref().to_string())
                        .collect::<Vec<_>>()
                        .join("/")
                })
            })
            .collect();
        out.sort();
        out
    }

    /// Copies everything under `folder_url` to a local temporary folder (to read it with the
    /// same helpers as local tables).
    pub fn download(&self, folder_url: &str) -> TempDir {
        let dir = TempDir::new().expect("temp dir");
        let store = self.store();
        let prefix = self.path_of(folder_url);
        RT.block_on(async {
            let metas: Vec<_> = store.list(Some(&prefix)).try_collect().await.expect("list");
            for m in metas {
                let relative: PathBuf = m
                    .location
                    .prefix_match(&prefix)
                    .expect("inside")
                    .map(|p| p.as_ref().to_string())
                    .collect();
                let target = dir.path().join(relative);
                std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
                let bytes = store
                    .get(&m.location)
                    .await
                    .expect("get")
                    .bytes()
                    .await
                    .expect("bytes");
                std::fs::write(target, bytes).expect("write");
            }
        });
        dir
    }

    /// A `[stores]` section for a job file that points at this server (endpoints and retries;
    /// credentials stay in the environment).
    pub fn job_stores(&self, extra: &[(&str, &str)]) -> String {
        let (target, mut options): (String, Vec<(String, String)>) = match self.backend {
            Backend::Local => return String::new(),
            Backend::S3 => ("s3://scorch-test".into(), vec![]),
            Backend::Gcs => ("gs://scorch-test".into(), vec![]),
            Backend::Azure => ("az://scorch-test".into(), vec![]),
        };
        options.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        if options.is_empty() {
            return String::new();
        }
        let body: Vec<String> = options
            .iter()
            .map(|(k, v)| format!("{k} = \"{v}\""))
            .collect();
        format!("\n[stores.\"{target}\"]\n{}\n", body.join("\n"))
    }
}

/// A scorch command with the server's environment.
pub fn scorch_on(server: &Server) -> Command {
    let mut c = crate::support::scorch();
    c.envs(&server.env);
    c
}
