//! Micro-benchmark of the output path: stamping rows with the run's provenance columns and
//! writing them as Parquet files into a staging folder, one writer per partition, as a job does.
//!
//! `cargo bench -p scorch-benches --bench write`. Throughput is in rows.

// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use std::sync::Arc;

use arrow::array::{Float32Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datafusion::datasource::MemTable;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::{SessionContext, col, lit};
use datafusion::scalar::ScalarValue;
use scorch_benches::Rng;
use scorch_engine::table::writer::{StagingWriteExec, WriteSpec};
use scorch_udfs::kernels::threads;

const ROWS: usize = 1_000_000;
const BATCH: usize = 8192;

/// `ROWS` rows of (id, score) split into one partition per core.
fn table() -> MemTable {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("score", DataType::Float32, true),
    ]));
    let mut rng = Rng::new(9);
    let batches: Vec<RecordBatch> = (0..ROWS)
        .step_by(BATCH)
        .map(|start| {
            let end = (start + BATCH).min(ROWS);
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from_iter_values(start as i64..end as i64)),
                    Arc::new(Float32Array::from_iter_values(
                        (start..end).map(|_| rng.unit()),
                    )),
                ],
            )
            .expect("batch")
        })
        .collect();
    let cores = threads::cores();
    let mut partitions = vec![Vec::new(); cores];
    for (i, b) in batches.into_iter().enumerate() {
        partitions[i % cores].push(b);
    }
    MemTable::try_new(schema, partitions).expect("table")
}

fn plan(
    runtime: &tokio::runtime::Runtime,
    ctx: &SessionContext,
    stamped: bool,
) -> Arc<dyn ExecutionPlan> {
    runtime.block_on(async {
        let df = ctx.read_table(Arc::new(table())).expect("table");
        let mut columns = vec![col("id"), col("score")];
        if stamped {
            let sha = "9f2c".repeat(16);
            columns.extend([
                lit("bench_mlp").alias("_model"),
                lit("1.0.0").alias("_model_version"),
                lit(sha.clone()).alias("_model_sha256"),
                lit(sha).alias("_data_sha256"),
                lit("0193a5c2-7c1e-7d2a-9b1e-5f0c3e2a1b4d").alias("_run_id"),
                lit(ScalarValue::TimestampMicrosecond(
                    Some(1_795_000_000_000_000),
                    Some("UTC".into()),
                ))
                .alias("_scored_at"),
            ]);
        }
        df.select(columns)
            .expect("projection")
            .create_physical_plan()
            .await
            .expect("physical plan")
    })
}

fn stamp_and_write(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ctx = SessionContext::new();
    let mut group = c.benchmark_group("write_rows");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROWS as u64));
    for stamped in [false, true] {
        let input = plan(&runtime, &ctx, stamped);
        let name = if stamped {
            "stamped_parquet_snappy"
        } else {
            "predictions_only_parquet_snappy"
        };
        group.bench_function(name, |bench| {
            bench.iter(|| {
                let dir = tempfile::tempdir().expect("temp dir");
                let spec = WriteSpec {
                    staging: format!("file://{}/", dir.path().display()),
                    partition_by: Vec::new(),
                    compression: "snappy".into(),
                    metadata: vec![("scorch.job".into(), "bench".into())],
                    buffer_bytes: 10 << 20,
                    run_id: "bench".into(),
                    extension: ".parquet".into(),
                    max_file_bytes: 256 << 20,
                    max_open_files: 64,
                    rejects: None,
                    rejected_at: 0,
                    shadow: None,
                    constant_columns: if stamped {
                        scorch_engine::run::stamps::STAMP_COLUMNS
                            .iter()
                            .map(|c| c.to_string())
                            .collect()
                    } else {
                        Vec::new()
                    },
                };
                let exec = Arc::new(StagingWriteExec::new(Arc::clone(&input), spec));
                runtime
                    .block_on(collect(exec, ctx.task_ctx()))
                    .expect("writes")
            });
        });
    }
    group.finish();
}

criterion_group!(benches, stamp_and_write);
criterion_main!(benches);
