//! Counting rows as they flow into the sink, for the progress bar and for throughput figures.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

/// A pass-through plan node that adds the number of rows it forwards to a shared counter.
#[derive(Debug)]
pub struct CountRowsExec {
    input: Arc<dyn ExecutionPlan>,
    rows: Arc<AtomicU64>,
}

impl CountRowsExec {
    /// Wraps `input`, counting into `rows`.
    pub fn new(input: Arc<dyn ExecutionPlan>, rows: Arc<AtomicU64>) -> Self {
        Self { input, rows }
    }
}

impl DisplayAs for CountRowsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountRowsExec")
    }
}

impl ExecutionPlan for CountRowsExec {
    fn name(&self) -> &str {
        "CountRowsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self::new(
            children.swap_remove(0),
            Arc::clone(&self.rows),
        )))
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let stream = self.input.execute(partition, context)?;
        let schema = stream.schema();
        let rows = Arc::clone(&self.rows);
        let counted = stream.inspect(move |batch| {
            if let Ok(batch) = batch {
                rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, counted)))
    }
}
