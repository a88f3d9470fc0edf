//! Built-in problems, each with exact oracles and, where possible, an exact [`Reference`].
//!
//! [`ProblemConfig`] is the registry used by experiment files (`[problem] kind = "…"`).
//!
//! | kind | module | reference |
//! |------|--------|-----------|
//! | `quadratic`, `quadratic_tiny` | [`quadratic`] | closed form |
//! | `logreg_hpo` | [`logreg_hpo`] (kernels in [`logistic`]) | Newton-CG ([`common::NewtonReference`]) |
//! | `data_cleaning` | [`data_cleaning`] | Newton-CG |
//! | `lancbio_synthetic` | [`lancbio_synthetic`] | Newton-CG |
//! | `hyper_representation` | [`hyper_representation`] | Newton-CG |
//! | `hyper_representation_deep` | [`hyper_representation_deep`] (network in [`crate::nn`]) | Newton-CG |
//! | `ridge_hpo` | [`ridge_hpo`] | closed form |
//! | `meta_linear` | [`meta_linear`] | forward-mode M ([`meta_reference`]) |
//! | `meta_sinusoid` | [`meta_sinusoid`] (network in [`crate::nn`]) | none: meta-train and meta-test losses |
//! | `meta_fewshot` | [`meta_fewshot`] (conv-4 or MLP in [`crate::nn`]) | none: meta-train and meta-test accuracy |
//!
//! Data-backed oracles stream over the rows of the batch (dense or CSR) with per-thread scratch
//! buffers, so minibatch calls do not allocate.
//!
//! [`Reference`]: crate::core::Reference

pub mod cleaning_network;
pub mod common;
pub mod data_cleaning;
pub mod hyper_representation;
pub mod hyper_representation_deep;
pub(crate) mod kernels;
pub use kernels::{SimdLevel, set_simd_cap, simd_level};
pub mod lancbio_synthetic;
pub mod least_squares;
pub mod logistic;
pub mod logreg_hpo;
pub mod meta_fewshot;
pub mod meta_linear;
pub mod meta_reference;
pub mod meta_sinusoid;
pub mod network_tasks;
pub mod quadratic;
pub mod ridge_hpo;
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
    /// L2 hyperparameters of logistic regression (ijcnn1, a9a, 20 Newsgroups, covtype).
    LogregHpo(logreg_hpo::LogregHpoConfig),
    /// Data hyper-cleaning: per-sample weights on noisy labels (MNIST).
    DataCleaning(data_cleaning::DataCleaningConfig),
    /// The LancBiO synthetic problem (ill-conditioned, non-quadratic).
    LancbioSynthetic(lancbio_synthetic::LancbioSyntheticConfig),
    /// ESJ's hyper-representation problems (linear or two-layer sigmoid, ridge head).
    HyperRepresentation(hyper_representation::HyperRepresentationConfig),
    /// Ridge hyperparameters with a closed-form inner solution.
    RidgeHpo(ridge_hpo::RidgeHpoConfig),
    /// FSLA's synthetic least-squares problem (algorithms.md §2.5).
    FslaLeastSquares(least_squares::LeastSquaresConfig),
    /// The UFO-BLO counter-example (algorithms.md §7.5): FO-MAML stalls, UFO-BLO does not.
    UfoToy(ufo_toy::UfoToyConfig),
    /// Few-shot linear regression with a shared linear feature map (meta-learning, head/body).
    MetaLinear(meta_linear::MetaLinearConfig),
    /// MAML's sinusoid regression on an MLP (meta-learning, exact HVPs by the R-op).
    MetaSinusoid(meta_sinusoid::MetaSinusoidConfig),
    /// ESJ's deep hyper-representation: a representation network, a softmax head (images).
    HyperRepresentationDeep(hyper_representation_deep::HyperRepresentationDeepConfig),
    /// N-way K-shot classification (conv-4 or MLP) on labelled images or Omniglot.
    MetaFewshot(meta_fewshot::MetaFewshotConfig),
}

impl ProblemConfig {
    /// The `kind` name.
    pub fn kind(&self) -> &'static str {
        match self {
            ProblemConfig::Quadratic(_) => "quadratic",
            ProblemConfig::QuadraticTiny(_) => "quadratic_tiny",
            ProblemConfig::LogregHpo(_) => "logreg_hpo",
            ProblemConfig::DataCleaning(_) => "data_cleaning",
            ProblemConfig::LancbioSynthetic(_) => "lancbio_synthetic",
            ProblemConfig::HyperRepresentation(_) => "hyper_representation",
            ProblemConfig::RidgeHpo(_) => "ridge_hpo",
            ProblemConfig::FslaLeastSquares(_) => "fsla_least_squares",
            ProblemConfig::UfoToy(_) => "ufo_toy",
            ProblemConfig::MetaLinear(_) => "meta_linear",
            ProblemConfig::MetaSinusoid(_) => "meta_sinusoid",
            ProblemConfig::MetaFewshot(_) => "meta_fewshot",
            ProblemConfig::HyperRepresentationDeep(_) => "hyper_representation_deep",
        }
    }
    /// Checks the parameters without building.
    pub fn validate(&self) -> Result<()> {
        match self {
            ProblemConfig::Quadratic(c) => c.validate(),
            ProblemConfig::QuadraticTiny(_) => Ok(()),
            ProblemConfig::LogregHpo(c) => c.validate(),
            ProblemConfig::DataCleaning(c) => c.validate(),
            ProblemConfig::LancbioSynthetic(c) => c.validate(),
            ProblemConfig::HyperRepresentation(c) => c.validate(),
            ProblemConfig::RidgeHpo(c) => c.validate(),
            ProblemConfig::FslaLeastSquares(c) => c.validate(),
            ProblemConfig::UfoToy(c) => c.validate(),
            ProblemConfig::MetaLinear(c) => c.validate(),
            ProblemConfig::MetaSinusoid(c) => c.validate(),
            ProblemConfig::MetaFewshot(c) => c.validate(),
            ProblemConfig::HyperRepresentationDeep(c) => c.validate(),
        }
    }
    /// Builds the problem (draws or loads its data).
    pub fn build(&self) -> Result<Problem> {
        match self {
            ProblemConfig::Quadratic(c) => c.build(),
            ProblemConfig::QuadraticTiny(_) => Ok(quadratic::tiny()),
            ProblemConfig::LogregHpo(c) => c.build(),
            ProblemConfig::DataCleaning(c) => c.build(),
            ProblemConfig::LancbioSynthetic(c) => c.build(),
            ProblemConfig::HyperRepresentation(c) => c.build(),
            ProblemConfig::RidgeHpo(c) => c.build(),
            ProblemConfig::FslaLeastSquares(c) => c.build(),
            ProblemConfig::UfoToy(c) => c.build(),
            ProblemConfig::MetaLinear(c) => c.build(),
            ProblemConfig::MetaSinusoid(c) => c.build(),
            ProblemConfig::MetaFewshot(c) => c.build(),
            ProblemConfig::HyperRepresentationDeep(c) => c.build(),
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
                ProblemConfig::LogregHpo(Default::default()),
                "L2 hyperparameters of logistic regression, binary/multiclass, dense/sparse \
                 (default: ijcnn1 per-feature), Newton-CG reference",
            ),
            (
                ProblemConfig::DataCleaning(Default::default()),
                "data hyper-cleaning, per-sample weights on noisy labels (default: MNIST 5k, \
                 p = 0.5), Newton-CG reference",
            ),
            (
                ProblemConfig::LancbioSynthetic(Default::default()),
                "LancBiO synthetic problem, ill-conditioned and non-quadratic, Newton-CG reference",
            ),
            (
                ProblemConfig::HyperRepresentation(Default::default()),
                "hyper-representation (linear or two-layer sigmoid) with a ridge head",
            ),
            (
                ProblemConfig::HyperRepresentationDeep(Default::default()),
                "deep hyper-representation on images: an MLP representation (outer), a ridge \
                 softmax head (inner), exact batched oracles (default: MNIST), Newton-CG reference",
            ),
            (
                ProblemConfig::RidgeHpo(Default::default()),
                "ridge hyperparameters on synthetic regression, closed-form reference",
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
            (
                ProblemConfig::MetaSinusoid(Default::default()),
                "MAML's sinusoid regression, MLP 1-40-40-1, exact HVPs by the R-op (unrolled)",
            ),
            (
                ProblemConfig::MetaFewshot(Default::default()),
                "N-way K-shot classification, conv-4 or MLP, disjoint meta-train/test classes                  (default: MNIST test set, 5-way 1-shot), exact HVPs by the R-op (unrolled)",
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
