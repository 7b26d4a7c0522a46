//! A package's files: reading them from a local folder or an object store, and the package hash
//! over them.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::package::MANIFEST_FILE;

/// Domain separator so that a package hash can never collide with the hash of a plain file.
const HASH_DOMAIN: &[u8] = b"scorch-model-package-v1\0";

/// The package hash: SHA-256 over every file, in lexicographic order of relative path, each
/// framed as `path NUL length(u64 LE) bytes`, after a fixed domain prefix.
pub fn package_sha256(files: &BTreeMap<String, Bytes>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(HASH_DOMAIN);
    for (path, bytes) in files {
        hasher.update(path.as_bytes());
        hasher.update([0u8]);
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    hex::encode(hasher.finalize())
}

/// Reads every file of a local package folder (hidden files and folders skipped).
pub fn read_local_dir(dir: &std::path::Path) -> Result<BTreeMap<String, Bytes>> {
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).map_err(io(&folder))? {
            let entry = entry.map_err(io(&folder))?;
            let path = entry.path();
            let Ok(relative) = path.strip_prefix(dir) else {
                continue;
            };
            let relative = relative.to_string_lossy().replace('\\', "/");
            if !is_package_file(&relative) {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).map_err(io(&path))?;
                files.insert(relative, Bytes::from(bytes));
            }
        }
    }
    Ok(files)
}

/// Whether a relative path is part of a package: hidden files and folders are not.
fn is_package_file(relative: &str) -> bool {
    !relative.is_empty() && !relative.split('/').any(|part| part.starts_with('.'))
}

pub(super) async fn read_files(
    store: Arc<dyn ObjectStore>,
    prefix: &ObjectPath,
    uri: &str,
) -> Result<BTreeMap<String, Bytes>> {
    let store_err = |path: &ObjectPath| {
        let uri = uri.to_string();
        let path = path.to_string();
        move |source| Error::Store { uri, path, source }
    };
    let metas: Vec<_> = store
        .list(Some(prefix))
        .try_collect()
        .await
        .map_err(store_err(prefix))?;
    let mut files = BTreeMap::new();
    for meta in metas {
        let relative = meta
            .location
            .prefix_match(prefix)
            .map(|parts| {
                parts
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_default();
        if !is_package_file(&relative) {
            continue;
        }
        let bytes = store
            .get(&meta.location)
            .await
            .map_err(store_err(&meta.location))?
            .bytes()
            .await
            .map_err(store_err(&meta.location))?;
        files.insert(relative, bytes);
    }
    if files.is_empty() {
        return Err(Error::ManifestMissing {
            uri: uri.to_string(),
            manifest: MANIFEST_FILE.to_string(),
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::Bytes;

    use super::*;
    use crate::package::fixtures::{files, manifest};

    #[test]
    fn hash_changes_with_any_byte_and_any_name() {
        let base = package_sha256(&files(&manifest()));
        let mut renamed = files(&manifest());
        let w = renamed.remove("w.safetensors").expect("present");
        renamed.insert("w2.safetensors".into(), w);
        let mut edited = files(&manifest());
        edited.insert("w.safetensors".into(), Bytes::from_static(b"weightz"));
        assert_ne!(base, package_sha256(&renamed));
        assert_ne!(base, package_sha256(&edited));
        assert_eq!(base, package_sha256(&files(&manifest())));
        assert_eq!(base.len(), 64);
    }

    #[test]
    fn framing_prevents_boundary_shifts() {
        let a = BTreeMap::from([
            ("x".to_string(), Bytes::from_static(b"ab")),
            ("y".to_string(), Bytes::from_static(b"c")),
        ]);
        let b = BTreeMap::from([
            ("x".to_string(), Bytes::from_static(b"a")),
            ("y".to_string(), Bytes::from_static(b"bc")),
        ]);
        assert_ne!(package_sha256(&a), package_sha256(&b));
    }

    #[test]
    fn hidden_files_are_not_part_of_a_package() {
        assert!(is_package_file("model.toml"));
        assert!(is_package_file("tokenizer/vocab.txt"));
        assert!(!is_package_file(".DS_Store"));
        assert!(!is_package_file(".cache/x"));
    }
}
