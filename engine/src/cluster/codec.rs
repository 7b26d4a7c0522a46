//! Codecs: Ballista's own, plus scorch's plan nodes ([`StagingWrite`], [`StagingWriteExec`]),
//! which write the output in parallel on the executors.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, Extension, LogicalPlan, ScalarUDF, WindowUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};

use crate::plan::delta_source::{DeltaSource, DeltaSourceSpec};
use crate::table::writer::{StagingWrite, StagingWriteExec, WriteSpec};

/// Marks a serialised [`DeltaSource`] (followed by its spec as JSON).
const DELTA_SOURCE_MAGIC: &[u8] = b"scorch.delta-source.v1\0";

/// Marks a serialised [`StagingWrite`] or [`StagingWriteExec`] (followed by its spec as JSON).
const WRITE_MAGIC: &[u8] = b"scorch.write.v1\0";

pub(super) fn encode_spec(spec: &WriteSpec, buf: &mut Vec<u8>) -> Result<()> {
    buf.extend_from_slice(WRITE_MAGIC);
    serde_json::to_writer(buf, spec).map_err(|e| DataFusionError::External(Box::new(e)))
}

pub(super) fn decode_spec(buf: &[u8]) -> Option<Result<WriteSpec>> {
    buf.strip_prefix(WRITE_MAGIC).map(|json| {
        serde_json::from_slice(json).map_err(|e| DataFusionError::External(Box::new(e)))
    })
}

/// Ballista's logical codec, plus [`StagingWrite`].
#[derive(Debug, Default)]
pub struct ScorchLogicalCodec {
    inner: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for ScorchLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        match decode_spec(buf) {
            Some(spec) => {
                let [input] = inputs else {
                    return Err(DataFusionError::Internal(
                        "StagingWrite takes one input".into(),
                    ));
                };
                Ok(Extension {
                    node: Arc::new(StagingWrite::try_new(input.clone(), spec?)?),
                })
            }
            None => self.inner.try_decode(buf, inputs, ctx),
        }
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        match node.node.as_any().downcast_ref::<StagingWrite>() {
            Some(write) => encode_spec(&write.spec, buf),
            None => self.inner.try_encode(node, buf),
        }
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        match buf.strip_prefix(DELTA_SOURCE_MAGIC) {
            Some(json) => {
                let spec: DeltaSourceSpec = serde_json::from_slice(json)
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                Ok(Arc::new(DeltaSource::try_new(spec)?))
            }
            None => self
                .inner
                .try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        match (node.as_ref() as &dyn std::any::Any).downcast_ref::<DeltaSource>() {
            Some(delta) => {
                buf.extend_from_slice(DELTA_SOURCE_MAGIC);
                serde_json::to_writer(buf, delta.spec())
                    .map_err(|e| DataFusionError::External(Box::new(e)))
            }
            None => self.inner.try_encode_table_provider(table_ref, node, buf),
        }
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.inner.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udf(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        self.inner.try_decode_udaf(name, buf)
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udaf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        self.inner.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udwf(node, buf)
    }
}

/// Ballista's physical codec, plus [`StagingWriteExec`].
#[derive(Debug, Default)]
pub struct ScorchPhysicalCodec {
    inner: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for ScorchPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match decode_spec(buf) {
            Some(spec) => {
                let [input] = inputs else {
                    return Err(DataFusionError::Internal(
                        "StagingWriteExec takes one input".into(),
                    ));
                };
                Ok(Arc::new(StagingWriteExec::new(Arc::clone(input), spec?)))
            }
            None => self.inner.try_decode(buf, inputs, ctx, converter),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        match node.downcast_ref::<StagingWriteExec>() {
            Some(write) => encode_spec(write.spec(), buf),
            None => self.inner.try_encode(node, buf, converter),
        }
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.inner.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udf(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        self.inner.try_decode_udaf(name, buf)
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udaf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        self.inner.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udwf(node, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_specs_survive_the_codecs() {
        let spec = WriteSpec {
            staging: "s3://b/t/_scorch/staging/r/".into(),
            partition_by: vec!["ds".into()],
            compression: "snappy".into(),
            metadata: vec![("scorch.run_id".into(), "r".into())],
            buffer_bytes: 1 << 20,
            run_id: "r".into(),
            extension: ".parquet".into(),
            max_file_bytes: 1 << 28,
            max_open_files: 64,
            rejects: Some("s3://b/rejects/".into()),
            rejected_at: 1_796_185_881_000_000,
            shadow: Some(crate::table::writer::ShadowWrite {
                url: "s3://b/shadow/".into(),
                columns: vec!["p".into()],
                stamps: vec![("_model".into(), "challenger".into())],
            }),
            constant_columns: vec!["_model".into(), "_run_id".into()],
        };
        let mut buf = Vec::new();
        encode_spec(&spec, &mut buf).expect("encodes");
        assert_eq!(decode_spec(&buf).expect("ours").expect("decodes"), spec);
        assert!(decode_spec(b"something else").is_none());
    }
}
