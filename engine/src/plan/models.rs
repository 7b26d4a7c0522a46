//! The models of a job: resolving and verifying the declared packages, and what the planned
//! query does with them (which it calls, and arguments that look swapped).

use std::collections::{BTreeMap, BTreeSet};

use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan};
use scorch_udfs::cache::PackageSource;
use scorch_udfs::{ModelCatalog, ModelLoader, ModelPackage, ModelRef};

use crate::error::{Error, Result};
use crate::job::JobSpec;
use crate::registry::{Registry, Selector};
use crate::run::manifest::RegistryUse;
use crate::store::StoreRegistry;

/// The job's models, fetched, verified against their pins and loaded.
pub struct ResolvedModels {
    /// The catalog the session carries.
    pub catalog: ModelCatalog,
    /// The packages, by SQL name.
    pub packages: BTreeMap<String, ModelPackage>,
    /// Where each package was read from this time.
    pub sources: BTreeMap<String, PackageSource>,
    /// How each registry model resolved.
    pub registered: BTreeMap<String, RegistryUse>,
}

/// Fetches every declared package, verifies its hash against the pin and loads its runtime, so
/// that a bad package fails before any data is read.
pub async fn resolve(
    job: &JobSpec,
    loader: &ModelLoader,
    stores: &StoreRegistry,
) -> Result<ResolvedModels> {
    let mut resolved = ResolvedModels {
        catalog: ModelCatalog::new(),
        packages: BTreeMap::new(),
        sources: BTreeMap::new(),
        registered: BTreeMap::new(),
    };
    for decl in &job.models {
        // A registry reference resolves here, once: the run pins the version it names now.
        let (uri, pin) = match &decl.registry {
            None => (decl.location.url().to_string(), decl.sha256.clone()),
            Some(r) => {
                let registry = Registry::new(r.registry.clone(), stores.store(&r.registry)?);
                let found = registry.resolve(&r.name, &r.selector).await?;
                if let Some(pin) = &decl.sha256
                    && *pin != found.sha256
                {
                    return Err(Error::Registry {
                        registry: r.registry.to_string(),
                        message: format!(
                            "models.{} pins sha256 {pin}, but {} {} is {} ({}); remove the pin \
                             to follow the registry, or pin the new hash",
                            decl.name, r.name, r.selector, found.sha256, found.version
                        ),
                    });
                }
                tracing::info!(model = %decl.name, registry = %r.registry, selector = %r.selector, version = %found.version, sha256 = %found.sha256, "model resolved in the registry");
                resolved.registered.insert(
                    decl.name.clone(),
                    RegistryUse {
                        registry: r.registry.to_string(),
                        name: r.name.clone(),
                        alias: match &r.selector {
                            Selector::Alias(a) => Some(a.clone()),
                            Selector::Version(_) => None,
                        },
                        version: found.version.clone(),
                    },
                );
                (found.location.url().to_string(), Some(found.sha256))
            }
        };
        let (package, source) = loader
            .fetch_verified(&decl.name, &uri, pin.as_deref())
            .await?;
        if pin.is_none() {
            tracing::warn!(
                model = %decl.name,
                sha256 = %package.sha256,
                "model is not pinned: add `sha256 = \"{}\"` to [models.{}] to make runs reproducible",
                package.sha256,
                decl.name
            );
        }
        loader.load_package(&decl.name, &package).await?;
        resolved
            .catalog
            .insert(ModelRef::from_package(&decl.name, &package));
        resolved.sources.insert(decl.name.clone(), source);
        resolved.packages.insert(decl.name.clone(), package);
    }
    Ok(resolved)
}

/// The scoring functions whose first argument names a model.
pub(crate) fn is_scoring_function(name: &str) -> bool {
    name == scorch_udfs::functions::predict::NAME || name == scorch_udfs::functions::embed::NAME
}

/// Calls `f(model, feature_arguments, function)` for every scoring call in a plan.
fn for_each_call(plan: &LogicalPlan, mut f: impl FnMut(&str, &[Expr], &str)) {
    // Visiting cannot fail: the closures only read.
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::ScalarFunction(call) = e
                    && is_scoring_function(call.func.name())
                    && let Some(Expr::Literal(
                        ScalarValue::Utf8(Some(model))
                        | ScalarValue::LargeUtf8(Some(model))
                        | ScalarValue::Utf8View(Some(model)),
                        _,
                    )) = call.args.first()
                {
                    f(model, &call.args[1..], call.func.name());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(TreeNodeRecursion::Continue)
    });
}

/// Names of the models a plan calls through `predict` or `embed`.
pub fn models_in_plan(plan: &LogicalPlan) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for_each_call(plan, |model, _, _| {
        names.insert(model.to_string());
    });
    names
}

/// Checks that every input `[checks] feature_psi` names is an input of a model that has a
/// reference profile, and that drift limits are set only when some model has one.
pub fn check_drift_limits(job: &JobSpec, catalog: &ModelCatalog) -> Result<()> {
    let profiled: Vec<&ModelRef> = catalog.iter().filter(|m| m.profile.is_some()).collect();
    let checks = &job.checks;
    let wants_drift = checks.max_feature_psi.is_some()
        || checks.max_output_psi.is_some()
        || checks.max_output_ks.is_some()
        || !checks.feature_psi.is_empty();
    let error = |message: String| Error::JobFile {
        path: job.path.clone(),
        message,
    };
    if wants_drift && profiled.is_empty() {
        return Err(error(
            "[checks] sets drift limits, but no model of the job has a reference profile: run \
             `scorch model profile <package> --data <reference data>` and pin the new hash"
                .into(),
        ));
    }
    for feature in checks.feature_psi.keys() {
        if !profiled
            .iter()
            .any(|m| m.inputs.iter().any(|i| &i.name == feature))
        {
            return Err(error(format!(
                "checks.feature_psi.{feature}: no profiled model has an input `{feature}` (inputs: {})",
                profiled
                    .iter()
                    .flat_map(|m| m.inputs.iter().map(|i| i.name.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(())
}

/// Refuses models declared in `[models]` that the query never calls: such a job is almost always
/// a query edit that dropped a `predict`, and it would commit rows with no predictions.
pub fn check_all_used(job: &JobSpec, used: &BTreeSet<String>) -> Result<()> {
    let unused: Vec<&str> = job
        .models
        .iter()
        .map(|m| m.name.as_str())
        .filter(|m| !used.contains(*m))
        // The query never calls the shadow model: the run adds its calls.
        .filter(|m| job.shadow.as_ref().is_none_or(|s| s.model != *m))
        .collect();
    if unused.is_empty() {
        return Ok(());
    }
    Err(Error::JobFile {
        path: job.path.clone(),
        message: format!(
            "[models] declares {} that the query never calls ({}); call {} with predict('<model>', ...) \
             or embed('<model>', ...), or remove {} from the job",
            if unused.len() == 1 {
                "a model"
            } else {
                "models"
            },
            unused.join(", "),
            if unused.len() == 1 { "it" } else { "them" },
            if unused.len() == 1 { "it" } else { "them" },
        ),
    })
}

/// Warnings for scoring arguments that are plain columns named like a different input of the
/// model: the classic bug of passing features in the wrong order.
pub fn argument_warnings(plan: &LogicalPlan, catalog: &ModelCatalog) -> Vec<String> {
    let mut warnings = BTreeSet::new();
    for_each_call(plan, |model, args, function| {
        let Ok(model_ref) = catalog.get(model) else {
            return;
        };
        let inputs: Vec<&str> = model_ref.inputs.iter().map(|i| i.name.as_str()).collect();
        for (i, (arg, input)) in args.iter().zip(&inputs).enumerate() {
            if let Expr::Column(c) = arg
                && c.name != *input
                && inputs.contains(&c.name.as_str())
            {
                warnings.insert(format!(
                    "{function}('{model}'): argument {} is column `{}` but the model's input {} is `{input}`; \
                     features must follow the order of the model's manifest",
                    i + 2,
                    c.name,
                    i + 1
                ));
            }
        }
    });
    warnings.into_iter().collect()
}
