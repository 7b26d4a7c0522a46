"""Reads a scorch output table with pyarrow and DuckDB, as downstream users do, and prints
what each reader sees as JSON. Only committed data is read: data files outside `_` folders."""
import json
import sys

import duckdb
import pyarrow.dataset as ds
import pyarrow as pa

root = sys.argv[1]

table = ds.dataset(
    root,
    format="parquet",
    partitioning=ds.partitioning(pa.schema([("ds", pa.date32())]), flavor="hive"),
).to_table()
pyarrow_report = {
    "rows": table.num_rows,
    "columns": [[f.name, str(f.type)] for f in table.schema],
    "days": sorted({d.isoformat() for d in table.column("ds").to_pylist()}),
    "null_predictions": table.column("churn_probability").null_count,
    "distinct_run_ids": len(set(table.column("_run_id").to_pylist())),
    "model_sha256": sorted(set(table.column("_model_sha256").to_pylist())),
    "probability_sum": float(sum(v for v in table.column("churn_probability").to_pylist() if v is not None)),
}

con = duckdb.connect()
con.execute(
    f"CREATE VIEW scores AS SELECT * FROM read_parquet('{root}/*/*.parquet', hive_partitioning = true)"
)
rows, nulls, runs, total = con.execute(
    "SELECT count(*), count(*) - count(churn_probability), count(DISTINCT _run_id), sum(churn_probability) FROM scores"
).fetchall()[0]
days = [str(r[0]) for r in con.execute("SELECT DISTINCT CAST(ds AS VARCHAR) FROM scores ORDER BY 1").fetchall()]
shas = [r[0] for r in con.execute("SELECT DISTINCT _model_sha256 FROM scores").fetchall()]
duckdb_report = {
    "rows": rows,
    "days": days,
    "null_predictions": nulls,
    "distinct_run_ids": runs,
    "model_sha256": sorted(shas),
    "probability_sum": float(total),
}
print(json.dumps({"pyarrow": pyarrow_report, "duckdb": duckdb_report}))
