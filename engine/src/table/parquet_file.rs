//! A Parquet file whose constant columns are encoded once.
//!
//! Every output row carries the run's stamps (`_model`, `_model_sha256`, `_run_id`, …): one
//! value per run, repeated in every row. The Arrow writer encodes such a column row by row (a
//! dictionary lookup and a min/max comparison per value), which made the stamps about a quarter
//! of a cheap job's time. [`ParquetFile`] writes every other column through the Arrow column
//! writers, as the Arrow writer does, and encodes each constant column's chunk once per row
//! count: through the same Arrow writer and the same properties, into a one-column file in
//! memory, whose chunk bytes, statistics and page index it splices into every row group of that
//! many rows ([`SerializedRowGroupWriter::append_column`]). The file is the one the Arrow writer
//! would have written, chunk for chunk.
//!
//! [`SerializedRowGroupWriter::append_column`]: parquet::file::writer::SerializedRowGroupWriter::append_column

use std::collections::HashMap;
use std::mem;
use std::sync::{Arc, LazyLock, Mutex};

use arrow::array::{ArrayRef, RecordBatch, new_empty_array};
use arrow::datatypes::{FieldRef, Schema, SchemaRef};
use bytes::Bytes;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use object_store::buffered::BufWriter;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::arrow::async_writer::AsyncFileWriter;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::{DEFAULT_MAX_ROW_GROUP_ROW_COUNT, WriterProperties};
use parquet::file::writer::SerializedFileWriter;

/// One column chunk, encoded: its bytes and what the row group needs to splice them in.
type Chunk = Arc<(Bytes, ColumnCloseResult)>;

/// A Parquet file being written to an object store.
pub struct ParquetFile {
    out: BufWriter,
    writer: SerializedFileWriter<Vec<u8>>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    props: WriterProperties,
    /// Per field: whether its value is the same in every row.
    constant: Vec<bool>,
    /// Per field: its Parquet leaf columns.
    leaves: Vec<usize>,
    /// Per constant field: its value (a one-row array), from the first batch written.
    values: Vec<Option<ArrayRef>>,
    /// The column writers of the row group in progress, one per leaf (a constant field's writer
    /// is created with the others and never used).
    in_progress: Option<Vec<ArrowColumnWriter>>,
    /// Rows in the row group in progress.
    rows: usize,
    max_rows: usize,
}

/// Encoded constant chunks, shared by every file of the process (a run's files have the same
/// stamps and mostly the same row counts), by field, value, row count and writer properties.
static CHUNKS: LazyLock<Mutex<HashMap<String, Chunk>>> = LazyLock::new(Default::default);

/// Chunks kept at most; past that the cache starts over (a process runs one job at a time).
const MAX_CHUNKS: usize = 256;

impl ParquetFile {
    /// A file of `schema` written to `out` with `props`; the fields named in `constant` must hold
    /// one value in every row of every batch (they are literals of the plan).
    pub fn try_new(
        out: BufWriter,
        schema: SchemaRef,
        props: WriterProperties,
        constant: &[String],
    ) -> Result<Self> {
        let max_rows = props
            .max_row_group_row_count()
            .unwrap_or(DEFAULT_MAX_ROW_GROUP_ROW_COUNT)
            .max(1);
        let arrow = ArrowWriter::try_new(Vec::new(), Arc::clone(&schema), Some(props.clone()))?;
        let (writer, factory) = arrow.into_serialized_writer()?;
        // Only a field that is not nested has exactly one leaf to splice.
        let constant: Vec<bool> = schema
            .fields()
            .iter()
            .map(|f| constant.contains(f.name()) && !f.data_type().is_nested())
            .collect();
        let leaves = schema
            .fields()
            .iter()
            .map(|f| Ok(compute_leaves(f, &new_empty_array(f.data_type()))?.len()))
            .collect::<Result<Vec<usize>>>()?;
        Ok(Self {
            out,
            writer,
            factory,
            values: vec![None; schema.fields().len()],
            schema,
            props,
            constant,
            leaves,
            in_progress: None,
            rows: 0,
            max_rows,
        })
    }

    /// Writes `batch`, closing a row group whenever it reaches the row limit.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        for (i, column) in batch.columns().iter().enumerate() {
            if self.constant[i] && self.values[i].is_none() && !column.is_empty() {
                self.values[i] = Some(column.slice(0, 1));
            }
        }
        let mut offset = 0;
        while offset < batch.num_rows() {
            let take = (batch.num_rows() - offset).min(self.max_rows - self.rows);
            self.write_rows(&batch.slice(offset, take))?;
            offset += take;
            if self.rows >= self.max_rows {
                self.flush().await?;
            }
        }
        Ok(())
    }

    fn write_rows(&mut self, part: &RecordBatch) -> Result<()> {
        let writers = match &mut self.in_progress {
            Some(writers) => writers,
            none => none.insert(
                self.factory
                    .create_column_writers(self.writer.flushed_row_groups().len())?,
            ),
        };
        let mut leaf = 0;
        for (i, (field, column)) in self.schema.fields().iter().zip(part.columns()).enumerate() {
            if self.constant[i] {
                leaf += 1;
                continue;
            }
            for values in compute_leaves(field, column)? {
                writers[leaf].write(&values)?;
                leaf += 1;
            }
        }
        self.rows += part.num_rows();
        Ok(())
    }

    /// Bytes written to the store so far.
    pub fn bytes_written(&self) -> usize {
        self.writer.bytes_written()
    }

    /// Bytes buffered for the row group in progress (the varying columns', encoded).
    pub fn in_progress_size(&self) -> usize {
        self.in_progress.as_ref().map_or(0, |writers| {
            writers.iter().map(|w| w.get_estimated_total_bytes()).sum()
        })
    }

    /// Closes the row group in progress and hands its bytes to the store.
    async fn flush(&mut self) -> Result<()> {
        let Some(writers) = self.in_progress.take() else {
            return Ok(());
        };
        let rows = mem::take(&mut self.rows);
        let mut group = self.writer.next_row_group()?;
        let mut writers = writers.into_iter();
        for (i, field) in self.schema.fields().iter().enumerate() {
            if self.constant[i] {
                // Its (unused) writer.
                writers.next();
                let value = self.values[i].as_ref().ok_or_else(|| {
                    DataFusionError::Internal(format!(
                        "no value for the constant column `{}`",
                        field.name()
                    ))
                })?;
                let chunk = constant_chunk(field, value, rows, &self.props)?;
                let (bytes, close) = chunk.as_ref();
                group.append_column(bytes, close.clone())?;
            } else {
                for writer in writers.by_ref().take(self.leaves[i]) {
                    writer.close()?.append_to_row_group(&mut group)?;
                }
            }
        }
        group.close()?;
        self.hand_over().await
    }

    async fn hand_over(&mut self) -> Result<()> {
        let buffer = mem::take(self.writer.inner_mut());
        if !buffer.is_empty() {
            self.out.write(Bytes::from(buffer)).await?;
        }
        Ok(())
    }

    /// Writes the last row group and the footer, completes the upload, and returns the file's
    /// metadata.
    pub async fn finish(&mut self) -> Result<ParquetMetaData> {
        self.flush().await?;
        let metadata = self.writer.finish()?;
        self.hand_over().await?;
        self.out.complete().await?;
        Ok(metadata)
    }
}

/// The chunk of `rows` copies of `value`, from the cache or encoded (under the cache's lock: a
/// second file wanting the same chunk waits for it rather than encoding it again).
fn constant_chunk(
    field: &FieldRef,
    value: &ArrayRef,
    rows: usize,
    props: &WriterProperties,
) -> Result<Chunk> {
    let key = format!("{field:?}|{value:?}|{rows}|{props:?}");
    let mut chunks = CHUNKS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(chunk) = chunks.get(&key) {
        return Ok(Arc::clone(chunk));
    }
    let chunk = Arc::new(encode_constant(field, value, rows, props)?);
    if chunks.len() >= MAX_CHUNKS {
        chunks.clear();
    }
    chunks.insert(key, Arc::clone(&chunk));
    Ok(chunk)
}

/// The chunk of `rows` copies of `value` (one row of `field`), as the Arrow writer encodes it with
/// `props`: written into a one-column file in memory, then cut out of it with its metadata.
fn encode_constant(
    field: &FieldRef,
    value: &ArrayRef,
    rows: usize,
    props: &WriterProperties,
) -> Result<(Bytes, ColumnCloseResult)> {
    // Written in slices of one small array, so that a million-row chunk costs no million-row
    // array.
    const SLICE: usize = 8192;
    let array = ScalarValue::try_from_array(value, 0)?.to_array_of_size(rows.min(SLICE))?;
    let schema = Arc::new(Schema::new(vec![Arc::clone(field)]));
    let slice = RecordBatch::try_new(Arc::clone(&schema), vec![array])?;
    let mut writer = ArrowWriter::try_new(Vec::new(), schema, Some(props.clone()))?;
    for start in (0..rows).step_by(SLICE) {
        writer.write(&slice.slice(0, SLICE.min(rows - start)))?;
    }
    // The chunk's metadata as the writer made it (its statistics as a column writer sets them,
    // not as a reader interprets them); the page index as written.
    let written = writer.finish()?;
    let bytes = Bytes::from(mem::take(writer.inner_mut()));
    let index = ParquetMetaDataReader::new()
        .with_page_index_policy(PageIndexPolicy::Optional)
        .parse_and_finish(&bytes)?;
    let column = written.row_group(0).column(0).clone();
    let close = ColumnCloseResult {
        bytes_written: column.compressed_size() as u64,
        rows_written: rows as u64,
        metadata: column,
        bloom_filter: None,
        column_index: index.column_index().map(|c| c[0][0].clone()),
        offset_index: index.offset_index().map(|o| o[0][0].clone()),
    };
    Ok((bytes, close))
}

#[cfg(test)]
mod tests {
    use super::*;

    use arrow::array::{
        Array, Float32Array, Int64Array, StringArray, StructArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::{DataType, Field, Fields, TimeUnit};
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{ObjectStore, ObjectStoreExt};
    use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};

    fn schema() -> SchemaRef {
        let prediction = Fields::from(vec![
            Field::new("p", DataType::Float32, true),
            Field::new("label", DataType::Int64, true),
        ]);
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("prediction", DataType::Struct(prediction), true),
            Field::new("_model", DataType::Utf8, true),
            Field::new("_model_version", DataType::Utf8, true),
            Field::new(
                "_scored_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]))
    }

    /// Batch `b` of `rows` rows: varying ids and predictions, constant stamps (one of them
    /// NULL).
    fn batch(b: i64, rows: i64) -> RecordBatch {
        let ids: Vec<i64> = (0..rows).map(|r| b * 1000 + r).collect();
        let p = Float32Array::from_iter((0..rows).map(|r| (r % 7 != 0).then_some(r as f32 / 3.0)));
        let label = Int64Array::from_iter_values((0..rows).map(|r| r % 2));
        let schema = schema();
        let DataType::Struct(fields) = schema.field(1).data_type() else {
            unreachable!("a struct")
        };
        let n = rows as usize;
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StructArray::new(
                    fields.clone(),
                    vec![Arc::new(p), Arc::new(label)],
                    None,
                )),
                Arc::new(StringArray::from(vec![Some("churn,upsell"); n])),
                Arc::new(StringArray::from(vec![None::<&str>; n])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![1_796_000_000_000_000; n])
                        .with_timezone("UTC"),
                ),
            ],
        )
        .expect("batch")
    }

    #[tokio::test]
    async fn constant_columns_are_spliced_into_the_file_the_arrow_writer_would_write() {
        // 3,500 rows in batches of 300 with row groups of 1,000: three full row groups (batches
        // split at the limit) and one of 500 rows.
        let small: Vec<RecordBatch> = (0..12)
            .map(|b| batch(b, if b == 11 { 200 } else { 300 }))
            .collect();
        splices_like_the_arrow_writer(1000, &small, 4).await;
        // Row groups of 20,000 rows, whose constant chunks are encoded in several slices.
        let large: Vec<RecordBatch> = (0..11).map(|b| batch(b, 4096)).collect();
        splices_like_the_arrow_writer(20_000, &large, 3).await;
    }

    async fn splices_like_the_arrow_writer(
        max_rows: usize,
        batches: &[RecordBatch],
        groups: usize,
    ) {
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(max_rows))
            .build();
        let store = Arc::new(InMemory::new());
        let path = Path::from("f.parquet");
        let constant = ["_model", "_model_version", "_scored_at"].map(String::from);
        let mut file = ParquetFile::try_new(
            BufWriter::new(Arc::clone(&store) as Arc<dyn ObjectStore>, path.clone()),
            schema(),
            props.clone(),
            &constant,
        )
        .expect("opens");
        for b in batches {
            file.write(b).await.expect("writes");
        }
        let ours = file.finish().await.expect("finishes");
        let bytes = store
            .get(&path)
            .await
            .expect("stored")
            .bytes()
            .await
            .expect("read");

        let mut reference = ArrowWriter::try_new(Vec::new(), schema(), Some(props)).expect("w");
        for b in batches {
            reference.write(b).expect("writes");
        }
        let theirs = reference.finish().expect("finishes");
        let reference_bytes = Bytes::from(reference.inner().clone());

        assert_eq!(ours.num_row_groups(), groups);
        assert_eq!(theirs.num_row_groups(), groups);
        // Constant chunks encoded once per row count (1,000 and 500 rows), spliced in with
        // their statistics and page index: nothing differs.
        assert!(
            bytes == reference_bytes,
            "the same bytes as the Arrow writer's file"
        );

        // The file reads back as written, page index included.
        let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(
            bytes,
            ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required),
        )
        .expect("a valid file");
        let metadata = reader.metadata().clone();
        assert!(metadata.offset_index().is_some() && metadata.column_index().is_some());
        let read: Vec<RecordBatch> = reader
            .build()
            .expect("reader")
            .collect::<std::result::Result<_, _>>()
            .expect("reads");
        let read = arrow::compute::concat_batches(&schema(), &read).expect("concat");
        let written = arrow::compute::concat_batches(&schema(), batches).expect("concat");
        assert_eq!(read, written);
        assert_eq!(read.column(3).null_count(), written.num_rows());
    }
}
