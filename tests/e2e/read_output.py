"""Reads a Parquet-mode scorch output folder with pyarrow, DuckDB and Spark, as downstream users
do, and prints what each reader sees as JSON.

Usage: read_output.py <table folder> [--no-spark]

DuckDB reads with a recursive glob (`**/*.parquet`), which also descends into scorch's `_scorch`
folder: it sees exactly the published rows only because staged files are not named `*.parquet`.
"""
import json
import sys

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

root = sys.argv[1]
with_spark = "--no-spark" not in sys.argv[2:]

table = ds.dataset(
    root,
    format="parquet",
    partitioning=ds.partitioning(pa.schema([("ds", pa.date32())]), flavor="hive"),
).to_table()
pyarrow_report = {
    "rows": table.num_rows,
    "distinct_keys": len(set(zip(table.column("ds").to_pylist(), table.column("customer_id").to_pylist()))),
    "columns": [[f.name, str(f.type)] for f in table.schema],
    "days": sorted({d.isoformat() for d in table.column("ds").to_pylist()}),
    "null_predictions": table.column("churn_probability").null_count,
    "distinct_run_ids": len(set(table.column("_run_id").to_pylist())),
    "model_sha256": sorted(set(table.column("_model_sha256").to_pylist())),
    "probability_sum": float(sum(v for v in table.column("churn_probability").to_pylist() if v is not None)),
}

con = duckdb.connect()
con.execute(
    f"CREATE VIEW scores AS SELECT * FROM read_parquet('{root}/**/*.parquet', hive_partitioning = true)"
)
rows, keys, nulls, runs, total = con.execute(
    "SELECT count(*), count(DISTINCT (ds, customer_id)), count(*) - count(churn_probability), "
    "count(DISTINCT _run_id), coalesce(sum(churn_probability), 0) FROM scores"
).fetchall()[0]
days = [str(r[0]) for r in con.execute("SELECT DISTINCT CAST(ds AS VARCHAR) FROM scores ORDER BY 1").fetchall()]
shas = [r[0] for r in con.execute("SELECT DISTINCT _model_sha256 FROM scores").fetchall()]
report = {
    "pyarrow": pyarrow_report,
    "duckdb": {
        "rows": rows,
        "distinct_keys": keys,
        "days": days,
        "null_predictions": nulls,
        "distinct_run_ids": runs,
        "model_sha256": sorted(shas),
        "probability_sum": float(total),
    },
}

if with_spark:
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = (
        SparkSession.builder.master("local[1]")
        .appName("scorch-reader")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.read.parquet(root)
    agg = df.agg(
        F.count(F.lit(1)).alias("rows"),
        F.countDistinct("ds", "customer_id").alias("keys"),
        F.sum(F.when(F.col("churn_probability").isNull(), 1).otherwise(0)).alias("nulls"),
        F.countDistinct("_run_id").alias("runs"),
        F.sum("churn_probability").alias("total"),
    ).collect()[0]
    report["spark"] = {
        "rows": agg["rows"],
        "distinct_keys": agg["keys"],
        "days": sorted(str(r[0]) for r in df.select("ds").distinct().collect()),
        "null_predictions": agg["nulls"],
        "distinct_run_ids": agg["runs"],
        "model_sha256": sorted(r[0] for r in df.select("_model_sha256").distinct().collect()),
        "probability_sum": float(agg["total"] or 0.0),
    }
    spark.stop()

print(json.dumps(report))
