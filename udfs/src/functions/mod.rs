//! The DataFusion functions scorch adds to SQL, one module per function.

pub mod embed;
pub mod predict;
pub mod scoring;

use std::sync::Arc;

use datafusion::logical_expr::ScalarUDF;

pub use embed::EmbedFunc;
pub use predict::PredictFunc;

use crate::cache::ModelLoader;
use crate::catalog::ModelCatalog;

/// Every scorch scalar function, built to load models with `loader` and to know `catalog`.
///
/// Register these on a built session state (not through
/// `SessionStateBuilder::with_scalar_functions`, which would drop DataFusion's built-ins).
pub fn all_functions(loader: ModelLoader, catalog: Arc<ModelCatalog>) -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(ScalarUDF::new_from_impl(EmbedFunc::new(
            loader.clone(),
            Arc::clone(&catalog),
        ))),
        predict_udf(loader, catalog),
    ]
}

/// `predict` as a [`ScalarUDF`].
pub fn predict_udf(loader: ModelLoader, catalog: Arc<ModelCatalog>) -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(PredictFunc::new(loader, catalog)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::cache::LocalResolver;
    use crate::device::DeviceSpec;

    #[test]
    fn no_two_functions_share_a_name_or_lack_docs() {
        let loader = ModelLoader::try_new(Arc::new(LocalResolver), DeviceSpec::Cpu).expect("cpu");
        let functions = all_functions(loader, Arc::default());
        let mut names = HashSet::new();
        for f in &functions {
            for name in std::iter::once(f.name()).chain(f.aliases().iter().map(String::as_str)) {
                assert!(
                    names.insert(name.to_string()),
                    "duplicate function name {name}"
                );
            }
            assert!(
                f.documentation().is_some(),
                "{} has no documentation",
                f.name()
            );
        }
    }
}
