"""Reads a Delta table written by scorch with two readers scorch does not contain: DuckDB's
`delta_scan` (the delta extension, loaded from the installed file) and the `deltalake` package.

Usage: read_delta.py <table folder> [<version>]
Prints one JSON object: per reader, the rows of the version asked for (default: the newest).
"""

import json
import os
import sys

import duckdb
import duckdb_extension_delta
from deltalake import DeltaTable


def summarise(rows):
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
        "probabilities": {
            f"{day}/{cid}": r["churn_probability"]
            for (day, cid), r in zip(keys, rows)
        },
    }


def main():
    table = sys.argv[1]
    version = int(sys.argv[2]) if len(sys.argv) > 2 else None
    ext = os.path.join(
        os.path.dirname(duckdb_extension_delta.__file__),
        "extensions",
        f"v{duckdb.__version__}",
        "delta.duckdb_extension",
    )
    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{ext}'")
    args = f"'{table}'" + (f", version => {version}" if version is not None else "")
    rel = con.sql(f"SELECT * FROM delta_scan({args})")
    columns = rel.columns
    duck = [dict(zip(columns, row)) for row in rel.fetchall()]

    dt = DeltaTable(table, version=version) if version is not None else DeltaTable(table)
    arrow = dt.to_pyarrow_table()
    lake = arrow.to_pylist()

    print(json.dumps({
        "duckdb": summarise(duck),
        "deltalake": summarise(lake),
        "deltalake_version": dt.version(),
        "columns": sorted(arrow.column_names),
    }, default=str))


if __name__ == "__main__":
    main()
