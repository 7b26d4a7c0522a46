//! Locations: the URLs of sources, models and outputs, with plain paths accepted.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use datafusion::execution::object_store::ObjectStoreUrl;
use object_store::path::Path as ObjectPath;
use url::Url;

/// URL schemes scorch can read and write.
pub const SCHEMES: &[&str] = &["file", "memory", "s3", "s3a", "gs", "az", "abfs", "abfss"];

/// A folder in some object store, as a URL that always ends with `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    url: Url,
}

impl Location {
    /// Parses a URL (`s3://bucket/prefix`, `file:///data`) or a path (absolute, or relative to
    /// `base`) naming a folder.
    pub fn parse_dir(text: &str, base: &Path) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty location".into());
        }
        let url = match Url::parse(text) {
            Ok(url) if url.scheme().len() > 1 => {
                if !SCHEMES.contains(&url.scheme()) {
                    return Err(format!(
                        "scheme `{}` is not supported (expected one of {} or a local path)",
                        url.scheme(),
                        SCHEMES.join(", ")
                    ));
                }
                if url.scheme() != "file" && url.host_str().is_none_or(str::is_empty) {
                    return Err(format!("`{text}` names no bucket or container"));
                }
                url
            }
            // Not a URL (or a Windows drive letter): a local path.
            _ => {
                let path = Path::new(text);
                let joined = if path.is_absolute() {
                    path.to_path_buf()
                } else {
                    base.join(path)
                };
                let absolute = std::path::absolute(&joined)
                    .map_err(|e| format!("cannot make `{text}` absolute: {e}"))?;
                Url::from_directory_path(normalize(&absolute))
                    .map_err(|()| format!("`{text}` is not a usable path"))?
            }
        };
        Ok(Self::from_url(url))
    }

    /// A location from a URL, adding the trailing `/`.
    pub fn from_url(mut url: Url) -> Self {
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        url.set_query(None);
        url.set_fragment(None);
        Self { url }
    }

    /// The folder's URL (ends with `/`).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The URL of the store (`scheme://authority`) as DataFusion registers it.
    pub fn store_url(&self) -> ObjectStoreUrl {
        let authority = &self.url[url::Position::BeforeHost..url::Position::AfterPort];
        ObjectStoreUrl::parse(format!("{}://{}", self.url.scheme(), authority))
            .expect("scheme://authority of a valid URL is a valid object store URL")
    }

    /// The folder's path inside its store.
    pub fn path(&self) -> ObjectPath {
        ObjectPath::from_url_path(self.url.path()).unwrap_or_default()
    }

    /// The path of `relative` (slash-separated) inside this folder.
    pub fn child(&self, relative: &str) -> ObjectPath {
        let mut parts: Vec<String> = self
            .path()
            .parts()
            .map(|p| p.as_ref().to_string())
            .collect();
        parts.extend(
            relative
                .split('/')
                .filter(|p| !p.is_empty())
                .map(str::to_string),
        );
        ObjectPath::from_iter(parts)
    }

    /// The sub-folder `relative`.
    pub fn join(&self, relative: &str) -> Self {
        let relative = relative.trim_matches('/');
        Self::from_url(
            self.url
                .join(&format!("{relative}/"))
                .expect("a relative path joins onto a folder URL"),
        )
    }

    /// `path` relative to this folder, when it is inside it.
    pub fn relative(&self, path: &ObjectPath) -> Option<String> {
        path.prefix_match(&self.path()).map(|parts| {
            parts
                .map(|p| p.as_ref().to_string())
                .collect::<Vec<_>>()
                .join("/")
        })
    }

    /// Whether `other` is this folder or inside it (same store, and this path is a prefix of
    /// the other's, segment by segment).
    pub fn contains(&self, other: &Location) -> bool {
        self.store_url() == other.store_url() && other.path().prefix_match(&self.path()).is_some()
    }

    /// Whether the two folders share anything: one is the other or contains it.
    pub fn overlaps(&self, other: &Location) -> bool {
        self.contains(other) || other.contains(self)
    }

    /// The URL without the trailing `/`, for a location that names a file.
    pub fn file_url(&self) -> String {
        self.url.as_str().trim_end_matches('/').to_string()
    }

    /// Whether this is on the local filesystem.
    pub fn is_local(&self) -> bool {
        self.url.scheme() == "file"
    }

    /// The local path, for `file://` locations.
    pub fn local_path(&self) -> Option<PathBuf> {
        self.is_local()
            .then(|| self.url.to_file_path().ok())
            .flatten()
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url.as_str())
    }
}

/// Removes `.` and `..` components without touching the filesystem.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_urls() {
        let base = Path::new("/jobs/daily");
        let rel = Location::parse_dir("../data/x", base).expect("relative path");
        assert_eq!(rel.url().as_str(), "file:///jobs/data/x/");
        assert_eq!(rel.path().as_ref(), "jobs/data/x");
        assert_eq!(rel.store_url().as_str(), "file:///");

        let s3 = Location::parse_dir("s3://bucket/some/prefix", base).expect("s3");
        assert_eq!(s3.url().as_str(), "s3://bucket/some/prefix/");
        assert_eq!(s3.store_url().as_str(), "s3://bucket/");
        assert_eq!(s3.child("a/b.parquet").as_ref(), "some/prefix/a/b.parquet");
        assert_eq!(
            s3.join("_scorch/log").url().as_str(),
            "s3://bucket/some/prefix/_scorch/log/"
        );
        assert_eq!(s3.relative(&s3.child("ds=1/x")).as_deref(), Some("ds=1/x"));

        assert!(
            Location::parse_dir("ftp://host/x", base)
                .unwrap_err()
                .contains("not supported")
        );
        assert!(Location::parse_dir("s3:///x", base).is_err());
    }

    #[test]
    fn overlap_is_by_whole_segments_and_store() {
        let base = Path::new("/");
        let loc = |t: &str| Location::parse_dir(t, base).expect("location");
        let data = loc("s3://b/data");
        assert!(data.overlaps(&loc("s3://b/data/")));
        assert!(data.contains(&loc("s3://b/data/features")));
        assert!(loc("s3://b/data/out").overlaps(&data));
        assert!(
            !data.overlaps(&loc("s3://b/database")),
            "a prefix of a name is not a parent"
        );
        assert!(!data.overlaps(&loc("s3://c/data")), "another bucket");
        assert!(!data.overlaps(&loc("gs://b/data")), "another store");
        assert!(loc("/tmp/x").overlaps(&loc("/tmp/x/y/z")));
    }
}
