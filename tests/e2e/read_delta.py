"""Reads a Delta table written by scorch with two readers scorch does not contain: DuckDB's
`delta_scan` (the delta extension, loaded from the installed file) and the `deltalake` package.

Usage: read_delta.py <table folder> [--version N] [--by COLUMN]
Prints one JSON object: per reader, a summary of the rows of the version asked for (default: the
newest), and with --by, the row count per value of COLUMN.
"""

import argparse
import json
import os

import duckdb
import duckdb_extension_delta
from deltalake import DeltaTable


def summarise(rows, by):
    """rows: dicts with ds, customer_id, churn_probability and the stamp columns."""
    keys = [(str(r["ds"]), r["customer_id"]) for r in rows]
    days = {}
    for day, _ in keys:
        days[day] = days.get(day, 0) + 1
    return {
        "rows": len(rows),
        "distinct_keys": len(set(keys)),
        "days": days,
        "null_predictions": sum(1 for r in rows if r["churn_probability"] is None),
        "run_ids": sorted({r["_run_id"] for r in rows}),
        "model_sha256": sorted({r["_model_sha256"] for r in rows if r["_model_sha256"]}),
        "by": count_by(rows, by) if by else None,
        "probabilities": {
            f"{day}/{cid}": r["churn_probability"]
            for (day, cid), r in zip(keys, rows)
        },
    }


def count_by(rows, column):
    counts = {}
    for r in rows:
        value = r[column]
        key = "<null>" if value is None else str(value)
        counts[key] = counts.get(key, 0) + 1
    return counts


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("table")
    parser.add_argument("--version", type=int)
    parser.add_argument("--by")
    args = parser.parse_args()
    table, version = args.table, args.version
    ext = os.path.join(
        os.path.dirname(duckdb_extension_delta.__file__),
        "extensions",
        f"v{duckdb.__version__}",
        "delta.duckdb_extension",
    )
    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{ext}'")
    scan = f"'{table}'" + (f", version => {version}" if version is not None else "")
    rel = con.sql(f"SELECT * FROM delta_scan({scan})")
    columns = rel.columns
    duck = [dict(zip(columns, row)) for row in rel.fetchall()]

    dt = DeltaTable(table, version=version) if version is not None else DeltaTable(table)
    arrow = dt.to_pyarrow_table()
    lake = arrow.to_pylist()

    print(json.dumps({
        "duckdb": summarise(duck, args.by),
        "deltalake": summarise(lake, args.by),
        "deltalake_version": dt.version(),
        "columns": sorted(arrow.column_names),
    }, default=str))


if __name__ == "__main__":
    main()
