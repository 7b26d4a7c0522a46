//! Job parameters: their types, parsing `--param key=value`, and binding values over defaults.
//!
//! Parameters are bound as typed SQL placeholders (`$ds`), never spliced into the text, so a
//! parameter value cannot change the shape of the query.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::job::JobSpec;

/// The types a job parameter can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// UTF-8 text.
    String,
    /// 64-bit signed integer.
    Int,
    /// 64-bit float.
    Float,
    /// `true` or `false`.
    Bool,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// An instant, RFC 3339 (`2026-11-27T00:00:00Z`) or `YYYY-MM-DD HH:MM:SS` (UTC).
    Timestamp,
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Float => "float",
            ParamType::Bool => "bool",
            ParamType::Date => "date",
            ParamType::Timestamp => "timestamp",
        })
    }
}

impl ParamType {
    /// Parses a value given as text (`--param k=v`, or a TOML string default).
    pub fn parse(self, name: &str, text: &str) -> Result<ScalarValue> {
        let bad = |expected: &str| Error::Param {
            name: name.to_string(),
            message: format!("`{text}` is not a valid {self}: expected {expected}"),
        };
        Ok(match self {
            ParamType::String => ScalarValue::Utf8(Some(text.to_string())),
            ParamType::Int => ScalarValue::Int64(Some(
                text.trim()
                    .parse()
                    .map_err(|_| bad("an integer such as 42"))?,
            )),
            ParamType::Float => {
                let v: f64 = text
                    .trim()
                    .parse()
                    .map_err(|_| bad("a number such as 0.5"))?;
                if !v.is_finite() {
                    return Err(bad("a finite number"));
                }
                ScalarValue::Float64(Some(v))
            }
            ParamType::Bool => ScalarValue::Boolean(Some(match text.trim() {
                "true" => true,
                "false" => false,
                _ => return Err(bad("`true` or `false`")),
            })),
            ParamType::Date => {
                let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
                    .map_err(|_| bad("a date such as 2026-11-27"))?;
                ScalarValue::Date32(Some(days_since_epoch(date)))
            }
            ParamType::Timestamp => {
                let t = text.trim();
                let instant: DateTime<Utc> = DateTime::parse_from_rfc3339(t)
                    .map(|d| d.with_timezone(&Utc))
                    .or_else(|_| {
                        NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").map(|n| n.and_utc())
                    })
                    .map_err(|_| bad("a timestamp such as 2026-11-27T00:00:00Z"))?;
                ScalarValue::TimestampMicrosecond(
                    Some(instant.timestamp_micros()),
                    Some("UTC".into()),
                )
            }
        })
    }

    /// The Arrow type of values of this parameter.
    pub fn data_type(self) -> DataType {
        match self {
            ParamType::String => DataType::Utf8,
            ParamType::Int => DataType::Int64,
            ParamType::Float => DataType::Float64,
            ParamType::Bool => DataType::Boolean,
            ParamType::Date => DataType::Date32,
            ParamType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }

    /// Parses a default as TOML gives it.
    pub(crate) fn parse_toml(self, name: &str, value: &toml::Value) -> Result<ScalarValue> {
        match (self, value) {
            (_, toml::Value::String(s)) => self.parse(name, s),
            (ParamType::Int, toml::Value::Integer(i)) => Ok(ScalarValue::Int64(Some(*i))),
            (ParamType::Float, toml::Value::Float(f)) => Ok(ScalarValue::Float64(Some(*f))),
            (ParamType::Float, toml::Value::Integer(i)) => {
                Ok(ScalarValue::Float64(Some(*i as f64)))
            }
            (ParamType::Bool, toml::Value::Boolean(b)) => Ok(ScalarValue::Boolean(Some(*b))),
            (ParamType::Date | ParamType::Timestamp, toml::Value::Datetime(d)) => {
                self.parse(name, &d.to_string())
            }
            (_, other) => Err(Error::Param {
                name: name.to_string(),
                message: format!("default {other} does not fit the declared type {self}"),
            }),
        }
    }
}

fn days_since_epoch(date: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("1970-01-01 is a valid date");
    (date - epoch).num_days() as i32
}

/// A declared parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Name, used in SQL as `$name`.
    pub name: String,
    /// Type.
    pub ptype: ParamType,
    /// Default value, if any.
    pub default: Option<ScalarValue>,
    /// Description for `--help`-like listings.
    pub description: Option<String>,
}

/// Parameter values ready to bind: name to typed value.
pub type BoundParams = BTreeMap<String, ScalarValue>;

/// How to treat declared parameters that have neither a value nor a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unbound {
    /// Fail, naming the parameter (running a job).
    Fail,
    /// Bind a typed `NULL`, so the job can still be planned and checked (`scorch validate`
    /// without `--param`).
    Null,
}

impl JobSpec {
    /// Binds `--param` overrides over the declared defaults: every declared parameter gets a
    /// typed value, and every override names a declared parameter.
    pub fn bind(&self, overrides: &[(String, String)]) -> Result<BoundParams> {
        self.bind_with(overrides, Unbound::Fail)
            .map(|(bound, _)| bound)
    }

    /// Like [`JobSpec::bind`]; with [`Unbound::Null`], parameters without a value are bound to a
    /// typed `NULL` and returned by name instead of failing.
    pub fn bind_with(
        &self,
        overrides: &[(String, String)],
        unbound: Unbound,
    ) -> Result<(BoundParams, Vec<String>)> {
        let mut bound = BoundParams::new();
        for (name, text) in overrides {
            let param = self.params.get(name).ok_or_else(|| Error::Param {
                name: name.clone(),
                message: format!(
                    "job `{}` declares no such parameter (declared: {})",
                    self.name,
                    self.declared_params()
                ),
            })?;
            if bound
                .insert(name.clone(), param.ptype.parse(name, text)?)
                .is_some()
            {
                return Err(Error::Param {
                    name: name.clone(),
                    message: "given more than once".into(),
                });
            }
        }
        let mut missing = Vec::new();
        for param in self.params.values() {
            if bound.contains_key(&param.name) {
                continue;
            }
            let value = match (&param.default, unbound) {
                (Some(default), _) => default.clone(),
                (None, Unbound::Null) => {
                    missing.push(param.name.clone());
                    ScalarValue::try_from(&param.ptype.data_type()).map_err(|e| Error::Param {
                        name: param.name.clone(),
                        message: e.to_string(),
                    })?
                }
                (None, Unbound::Fail) => {
                    return Err(Error::Param {
                        name: param.name.clone(),
                        message: format!(
                            "missing: job `{}` declares it without a default; pass --param {}=<{}>",
                            self.name, param.name, param.ptype
                        ),
                    });
                }
            };
            bound.insert(param.name.clone(), value);
        }
        Ok((bound, missing))
    }

    fn declared_params(&self) -> String {
        if self.params.is_empty() {
            "none".to_string()
        } else {
            self.params.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    }
}

/// Splits `key=value` as given to `--param`.
pub fn parse_param_arg(arg: &str) -> Result<(String, String)> {
    let (k, v) = arg.split_once('=').ok_or_else(|| Error::Param {
        name: arg.to_string(),
        message: "expected key=value".into(),
    })?;
    Ok((k.trim().to_string(), v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_param_type_parses() {
        assert_eq!(
            ParamType::Int.parse("n", "42").expect("int"),
            ScalarValue::Int64(Some(42))
        );
        assert_eq!(
            ParamType::Bool.parse("b", "true").expect("bool"),
            ScalarValue::Boolean(Some(true))
        );
        assert_eq!(
            ParamType::Timestamp
                .parse("t", "1970-01-01T00:00:01Z")
                .expect("ts"),
            ScalarValue::TimestampMicrosecond(Some(1_000_000), Some("UTC".into()))
        );
        assert!(ParamType::Float.parse("f", "NaN").is_err());
        assert!(ParamType::Int.parse("n", "4.2").is_err());
    }
}
