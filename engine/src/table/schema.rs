//! The schema a table commits, and how a run's schema may differ from it.

use std::collections::BTreeMap;

use arrow::datatypes::DataType;
use serde::{Deserialize, Serialize};

use crate::job::SchemaMode;

/// One column of a table: its name and Arrow type (as Arrow prints it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableColumn {
    /// Column name.
    pub name: String,
    /// Arrow type, printed (`Float32`, `Struct("a": Float32, ...)`).
    #[serde(rename = "type")]
    pub data_type: String,
}

impl TableColumn {
    /// A column of `data_type`.
    pub fn new(name: &str, data_type: &DataType) -> Self {
        Self {
            name: name.to_string(),
            data_type: data_type.to_string(),
        }
    }
}

/// The columns of a table, in output order (partition columns included).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    /// Columns.
    pub columns: Vec<TableColumn>,
}

impl TableSchema {
    /// The columns of an Arrow schema.
    pub fn from_arrow(schema: &arrow::datatypes::Schema) -> Self {
        Self {
            columns: schema
                .fields()
                .iter()
                .map(|f| TableColumn::new(f.name(), f.data_type()))
                .collect(),
        }
    }

    /// What `new` changes in this schema that `mode` does not allow, one line per column.
    /// Column order is not compared: every reader finds columns by name.
    pub fn differences(&self, new: &TableSchema, mode: SchemaMode) -> Vec<String> {
        if mode == SchemaMode::Overwrite {
            return Vec::new();
        }
        let old: BTreeMap<&str, &str> = self
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.data_type.as_str()))
            .collect();
        let new_columns: BTreeMap<&str, &str> = new
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.data_type.as_str()))
            .collect();
        let mut out = Vec::new();
        for (name, old_type) in &old {
            match new_columns.get(name) {
                Some(new_type) if new_type != old_type => out.push(format!(
                    "column `{name}`: type {old_type} becomes {new_type}"
                )),
                Some(_) => {}
                None if mode == SchemaMode::Strict => {
                    out.push(format!("column `{name}` ({old_type}) is no longer written"))
                }
                None => {}
            }
        }
        if mode == SchemaMode::Strict {
            for (name, new_type) in &new_columns {
                if !old.contains_key(name) {
                    out.push(format!("column `{name}` ({new_type}) is new"));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(columns: &[(&str, DataType)]) -> TableSchema {
        TableSchema {
            columns: columns
                .iter()
                .map(|(n, t)| TableColumn::new(n, t))
                .collect(),
        }
    }

    #[test]
    fn modes_allow_what_they_say() {
        let old = schema(&[("id", DataType::Int64), ("p", DataType::Float32)]);
        let retyped = schema(&[("id", DataType::Int64), ("p", DataType::Float64)]);
        let added = schema(&[
            ("p", DataType::Float32),
            ("id", DataType::Int64),
            ("q", DataType::Utf8),
        ]);
        let dropped = schema(&[("id", DataType::Int64)]);

        assert!(old.differences(&old, SchemaMode::Strict).is_empty());
        let d = old.differences(&retyped, SchemaMode::Strict);
        assert_eq!(d, vec!["column `p`: type Float32 becomes Float64"]);
        assert_eq!(
            old.differences(&added, SchemaMode::Strict),
            vec!["column `q` (Utf8) is new"],
            "reordering is not a change"
        );
        assert_eq!(
            old.differences(&dropped, SchemaMode::Strict),
            vec!["column `p` (Float32) is no longer written"]
        );

        assert!(old.differences(&added, SchemaMode::Merge).is_empty());
        assert!(old.differences(&dropped, SchemaMode::Merge).is_empty());
        assert_eq!(old.differences(&retyped, SchemaMode::Merge).len(), 1);

        assert!(old.differences(&retyped, SchemaMode::Overwrite).is_empty());
    }
}
