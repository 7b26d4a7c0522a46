//! What a run tells the systems and people that watch it: Prometheus metrics ([`metrics`]: a
//! textfile and a Pushgateway push, when the run ends), OpenLineage events ([`lineage`]: when it
//! starts and when it ends) and a self-contained HTML page about a run ([`report`]).

pub mod lineage;
pub mod metrics;
pub mod report;

use std::path::PathBuf;

/// A file path whose folder exists (where a sink writes when a run ends: checked before it).
pub fn file_in_existing_folder(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if path.file_name().is_none() || !folder.is_dir() {
        return Err(format!(
            "`{text}`: the folder {} does not exist (the file is written there when the run ends)",
            folder.display()
        ));
    }
    Ok(path)
}

/// An `http://` or `https://` URL with a host, without a trailing slash.
pub fn http_url(text: &str) -> Result<String, String> {
    match url::Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            Ok(text.trim_end_matches('/').to_string())
        }
        _ => Err(format!("`{text}` is not an http:// or https:// URL")),
    }
}
