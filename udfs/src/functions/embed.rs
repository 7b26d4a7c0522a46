//! `embed('<model>', text)`: a sentence embedding from an encoder in the session's catalog.

use std::sync::LazyLock;

use datafusion::common::plan_err;
use datafusion::error::Result;
use datafusion::logical_expr::{DocSection, Documentation};

use crate::catalog::ModelRef;
use crate::functions::scoring::{ScoringFunc, ScoringKind};
use crate::package::ModelFormat;

/// The SQL name of the function.
pub const NAME: &str = "embed";

/// Embeds text with a sentence encoder: `embed('minilm', description)` returns a fixed-size
/// list of floats, pooled and normalised as the encoder's configuration asks. NULL text gives
/// NULL.
pub type EmbedFunc = ScoringFunc<Embed>;

/// The kind of [`EmbedFunc`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Embed;

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DocSection {
            include: true,
            label: "Scoring Functions",
            description: Some("Functions that run the job's models on rows."),
        },
        "Embeds text with a sentence encoder declared by the job (format `embedder`). Returns a \
         fixed-size list of FLOATs, pooled and normalised as the encoder's configuration asks. \
         Texts longer than the encoder's maximum length are truncated. NULL text gives NULL.",
        "embed('<model>', text)",
    )
    .with_sql_example(
        "SELECT ticket_id, embed('minilm', subject || ' ' || body) AS embedding\nFROM tickets",
    )
    .with_argument(
        "model",
        "Name of an embedder declared in the job's [models] table, as a string literal.",
    )
    .with_argument("text", "The text to embed (VARCHAR).")
    .build()
});

impl ScoringKind for Embed {
    const NAME: &'static str = NAME;

    fn check_arity(count: usize) -> Result<()> {
        // A third argument is the rejects' key struct the engine adds (see `crate::rejects`).
        if !(2..=3).contains(&count) {
            return plan_err!("{NAME} takes a model name and one text, got {count} arguments");
        }
        Ok(())
    }

    fn check_model(model: &ModelRef) -> Result<()> {
        if model.format != ModelFormat::Embedder {
            let name = &model.name;
            return plan_err!(
                "{NAME}('{name}'): `{name}` is a {} model, not an embedder; use predict()",
                model.format
            );
        }
        Ok(())
    }

    fn documentation() -> &'static Documentation {
        &DOCUMENTATION
    }
}
