//! Counting rows as they flow into the sink, for the progress bar and for throughput figures.

use std::fmt;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::source::DataSourceExec;
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

/// Puts a row counter above every scan, so progress is measured in rows read.
pub fn count_scan_rows(
    plan: Arc<dyn ExecutionPlan>,
    rows: &Arc<AtomicU64>,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        if node.is::<DataSourceExec>() {
            let counted: Arc<dyn ExecutionPlan> =
                Arc::new(CountRowsExec::new(node, Arc::clone(rows)));
            Ok(Transformed::yes(counted))
        } else {
            Ok(Transformed::no(node))
        }
    })
    .map(|t| t.data)
}

/// A progress bar on stderr and the task that updates it.
pub struct Progress {
    bar: indicatif::ProgressBar,
    updater: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Draws a bar of `total` rows (a spinner when unknown) fed by `rows`, when `enabled`,
    /// stderr is a terminal that is not `dumb`, and `SCORCH_NO_PROGRESS` is unset.
    pub fn start(enabled: bool, total: Option<u64>, rows: Arc<AtomicU64>) -> Option<Self> {
        if !enabled
            || !std::io::stderr().is_terminal()
            || std::env::var_os("SCORCH_NO_PROGRESS").is_some()
            || std::env::var("TERM").is_ok_and(|t| t == "dumb")
        {
            return None;
        }
        let bar = match total {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new_spinner(),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} scoring [{bar:40}] {human_pos}/{human_len} rows ({msg}, eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        let updater = bar.clone();
        let started = std::time::Instant::now();
        let handle = tokio::spawn(async move {
            loop {
                let done = rows.load(Ordering::Relaxed);
                updater.set_position(done);
                let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
                updater.set_message(format!("{} rows/s", thousands(rate.round() as u64)));
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        });
        Some(Self {
            bar,
            updater: handle,
        })
    }

    /// Stops updating and clears the bar.
    pub fn finish(self) {
        self.updater.abort();
        self.bar.finish_and_clear();
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_133_596), "1,133,596");
    }
}
