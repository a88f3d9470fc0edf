//! Built-in problems, each with exact oracles and, where possible, an exact [`Reference`].
//!
//! [`ProblemConfig`] is the registry used by experiment files (`[problem] kind = "…"`).
//!
//! [`Reference`]: crate::core::Reference

pub mod least_squares;
pub mod meta_linear;
pub mod meta_reference;
pub mod quadratic;
pub mod ufo_toy;

use serde::{Deserialize, Serialize};

use crate::core::{Problem, Result};

/// Settings of the tiny deterministic quadratic (it has none; the table only selects it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuadraticTinyConfig {}

/// Every built-in problem, selected by `kind` in experiment files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProblemConfig {
    /// The benchmark quadratic (algorithms.md §9.9).
    Quadratic(quadratic::QuadraticConfig),
    /// The tiny deterministic quadratic of the unit tests.
    QuadraticTiny(QuadraticTinyConfig),
    /// FSLA's synthetic least-squares problem (algorithms.md §2.5).
    FslaLeastSquares(least_squares::LeastSquaresConfig),
    /// The UFO-BLO counter-example (algorithms.md §7.5): FO-MAML stalls, UFO-BLO does not.
    UfoToy(ufo_toy::UfoToyConfig),
    /// Few-shot linear regression with a shared linear feature map (meta-learning, head/body).
    MetaLinear(meta_linear::MetaLinearConfig),
}

impl ProblemConfig {
    /// The `kind` name.
    pub fn kind(&self) -> &'static str {
        match self {
            ProblemConfig::Quadratic(_) => "quadratic",
            ProblemConfig::QuadraticTiny(_) => "quadratic_tiny",
            ProblemConfig::FslaLeastSquares(_) => "fsla_least_squares",
            ProblemConfig::UfoToy(_) => "ufo_toy",
            ProblemConfig::MetaLinear(_) => "meta_linear",
        }
    }
    /// Checks the parameters without building.
    pub fn validate(&self) -> Result<()> {
        match self {
            ProblemConfig::Quadratic(c) => c.validate(),
            ProblemConfig::QuadraticTiny(_) => Ok(()),
            ProblemConfig::FslaLeastSquares(c) => c.validate(),
            ProblemConfig::UfoToy(c) => c.validate(),
            ProblemConfig::MetaLinear(c) => c.validate(),
        }
    }
    /// Builds the problem (draws or loads its data).
    pub fn build(&self) -> Result<Problem> {
        match self {
            ProblemConfig::Quadratic(c) => c.build(),
            ProblemConfig::QuadraticTiny(_) => Ok(quadratic::tiny()),
            ProblemConfig::FslaLeastSquares(c) => c.build(),
            ProblemConfig::UfoToy(c) => c.build(),
            ProblemConfig::MetaLinear(c) => c.build(),
        }
    }
    /// Every problem kind with its default parameters (for `bilevel list`).
    pub fn catalog() -> Vec<(&'static str, &'static str, serde_json::Value)> {
        let entries = [
            (
                ProblemConfig::Quadratic(Default::default()),
                "benchmark quadratic, finite sums of rank-one quadratics, closed-form reference",
            ),
            (
                ProblemConfig::QuadraticTiny(Default::default()),
                "2 x 3 deterministic quadratic for unit tests",
            ),
            (
                ProblemConfig::FslaLeastSquares(Default::default()),
                "FSLA's least-squares problem (uniform A, C, D), closed-form reference",
            ),
            (
                ProblemConfig::UfoToy(Default::default()),
                "UFO-BLO counter-example: two 1-D tasks where FO-MAML stalls (unrolled, exact M)",
            ),
            (
                ProblemConfig::MetaLinear(Default::default()),
                "few-shot regression, shared linear features + task heads (unrolled, exact M)",
            ),
        ];
        entries
            .into_iter()
            .map(|(c, about)| {
                let mut json = serde_json::to_value(&c).expect("invariant: configs serialize");
                if let Some(map) = json.as_object_mut() {
                    map.remove("kind");
                }
                (c.kind(), about, json)
            })
            .collect()
    }
}
