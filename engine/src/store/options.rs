//! Per-store options: `[stores]` of a job file, the `SCORCH_STORE_*` environment, and the retry
//! settings scorch applies to every store.
//!
//! Credentials never come from a job file: a key that names a secret is refused with the
//! environment variable to use instead. The options that remain are not secret, so they travel
//! with a distributed plan and executors build the same stores as the client.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use object_store::aws::AmazonS3ConfigKey;
use object_store::azure::AzureConfigKey;
use object_store::gcp::GoogleConfigKey;
use object_store::{BackoffConfig, RetryConfig};
use serde::{Deserialize, Serialize};
use url::Url;

use super::store_key;

/// Retry options scorch itself understands (the rest go to the store's builder).
pub(super) const RETRY_KEYS: [&str; 4] = [
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
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// The options as JSON, as they travel in a plan's configuration (`scorch.stores`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("string maps always serialise")
    }

    /// Options from [`StoreOptions::to_json`].
    pub fn from_json(json: &str) -> Option<Self> {
        serde_json::from_str(json).ok()
    }

    /// Checks and adds the options a job file gives for `target`: as [`StoreOptions::try_insert`],
    /// and refusing secrets, which belong in the environment (they would otherwise be written
    /// into job files, version control and distributed plans).
    pub fn try_insert_from_job(
        &mut self,
        target: &str,
        options: BTreeMap<String, String>,
    ) -> Result<(), String> {
        let scheme = target.split("://").next().unwrap_or(target);
        for key in options.keys() {
            if let Some(variable) = credential_variable(scheme, key) {
                return Err(format!(
                    "`{key}` is a credential; credentials never come from a job file: set \
                     {variable} in the environment of every process that runs the job"
                ));
            }
        }
        self.try_insert(target, options)
    }

    /// Checks and adds the options for `target` (`s3`, or `s3://bucket`).
    pub fn try_insert(
        &mut self,
        target: &str,
        options: BTreeMap<String, String>,
    ) -> Result<(), String> {
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
    pub(super) fn for_url(&self, url: &Url) -> BTreeMap<String, String> {
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

/// For a key that configures a credential of `scheme`'s store, the environment variable to set
/// instead (the key's canonical name, upper-cased, which is what the store's builder reads).
/// Paths to credential files, key ids and switches are not credentials.
fn credential_variable(scheme: &str, key: &str) -> Option<String> {
    let canonical = match scheme {
        "s3" | "s3a" => {
            let k = AmazonS3ConfigKey::from_str(key).ok()?;
            let secret = matches!(
                k,
                AmazonS3ConfigKey::AccessKeyId
                    | AmazonS3ConfigKey::SecretAccessKey
                    | AmazonS3ConfigKey::Token
            ) || k.as_ref() == "aws_sse_customer_key_base64";
            if !secret {
                return None;
            }
            k.as_ref().to_string()
        }
        "gs" => match GoogleConfigKey::from_str(key).ok()? {
            k @ GoogleConfigKey::ServiceAccountKey => k.as_ref().to_string(),
            _ => return None,
        },
        "az" | "abfs" | "abfss" => match AzureConfigKey::from_str(key).ok()? {
            k @ (AzureConfigKey::AccessKey
            | AzureConfigKey::ClientSecret
            | AzureConfigKey::SasKey
            | AzureConfigKey::Token
            | AzureConfigKey::FabricSessionToken) => k.as_ref().to_string(),
            _ => return None,
        },
        _ => return None,
    };
    Some(canonical.to_ascii_uppercase())
}

fn parse_retry_value(key: &str, value: &str) -> Result<(), String> {
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
pub fn parse_duration(text: &str) -> Result<Duration, String> {
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

pub(super) fn retry_config(options: &BTreeMap<String, String>) -> RetryConfig {
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
        o.try_insert("s3://features", s3)
            .expect("valid s3 options (job files are checked by try_insert_from_job)");
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
    fn job_files_cannot_carry_credentials() {
        let mut o = StoreOptions::default();
        let err = o
            .try_insert_from_job(
                "s3://b",
                BTreeMap::from([("aws_secret_access_key".to_string(), "x".to_string())]),
            )
            .expect_err("a secret");
        assert!(err.contains("AWS_SECRET_ACCESS_KEY"), "{err}");
        let err = o
            .try_insert_from_job(
                "az",
                BTreeMap::from([("account_key".to_string(), "x".to_string())]),
            )
            .expect_err("a secret");
        assert!(err.contains("AZURE_STORAGE_ACCOUNT_KEY"), "{err}");
        o.try_insert_from_job(
            "gs",
            BTreeMap::from([(
                "service_account_path".to_string(),
                "/var/secrets/gcs.json".to_string(),
            )]),
        )
        .expect("a path to a credential file is not itself a secret");
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
