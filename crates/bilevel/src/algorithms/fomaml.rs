//! # FO-MAML (FOM) — first-order MAML
//!
//! C. Finn, P. Abbeel, S. Levine. *Model-Agnostic Meta-Learning for Fast Adaptation of Deep
//! Networks.* ICML 2017 (arXiv:1703.03400), §5.2 (first-order approximation); called FOM /
//! FO-BLO by V. Likhosherstov et al. (arXiv:2006.03631). algorithms.md §7.1 and §8.6; the q = 0
//! case of UFO-BLO (§7.3).
//!
//! Drops every second-order term of the MAML meta-gradient: ĥ = ∇L_j(θ_r), the query gradient
//! at the adapted parameters. Biased: its fixed points are in general NOT stationary points of
//! M (the `ufo_toy` problem is built so that FO-MAML provably stalls at |∇M| = 0.1). It reaches
//! ∇M = 0 when every task's query loss is minimised by the adapted parameters (e.g. a single
//! task, where ∇L(θ_r) = 0 implies ∇M = Π(I − αH_k)∇L(θ_r) = 0); the convergence table runs it
//! on such an instance.
//!
//! ## Update (one meta-iteration t)
//! 1. Draw a meta-batch 𝒯 of `meta_batch` tasks.
//! 2. For each task j: θ₀ = φ_t, $\theta_{k+1} = \theta_k - \alpha \nabla l_j(\theta_k)$, k < r
//!    (nothing stored).
//! 3. $\hat h = \frac{1}{|\mathcal T|}\sum_j \nabla L_j(\theta_r^j)$ (§7.1, g_FO) and
//!    $\phi_{t+1} = \phi_t - \gamma_t \hat h$ (or Adam).
//!
//! ## Oracle calls per iteration (m = meta-batch size; checked by `tests/it/oracle_counts.rs`)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | m·r | m | one task each |
//! | hvp_yy, grad_x, cross_xy | 0 | 0 | |
//!
//! ## Parameters
//! r and α belong to the problem.
//!
//! | field | paper | default | range |
//! |-------|-------|---------|-------|
//! | `meta_batch` | tasks per meta-step | 5 (UFOM code) | ≥ 1 |
//! | `sampling` | — | `shuffled` | `shuffled`, `with_replacement`, `contiguous` |
//! | `outer_lr` | β | `constant 0.1` | schedule |
//! | `outer_optimizer` | — | `{ kind = "sgd" }` | `sgd`, `adam { beta1, beta2, eps }` |
//!
//! ## Example
//! ```
//! use bilevel::prelude::*;
//! use bilevel::problems::meta_linear::MetaLinearConfig;
//! // One task whose query set is its support set: FO-MAML's fixed points are stationary for M.
//! let problem = MetaLinearConfig { tasks: 1, query_is_support: true, ..Default::default() }
//!     .build()
//!     .unwrap();
//! let solver = FomamlConfig { outer_lr: Schedule::constant(0.3), ..Default::default() }
//!     .build()
//!     .unwrap();
//! let (x0, y0) = problem.start();
//! let reference = problem.reference().unwrap();
//! let start = reference.evaluate(&x0).unwrap().hypergradient.norm();
//! let mut state = solver.init(&problem, x0, y0, 0).unwrap();
//! for _ in 0..100 {
//!     solver.step(&problem, &mut state).unwrap();
//! }
//! assert!(reference.evaluate(&state.x).unwrap().hypergradient.norm() < 0.5 * start);
//! ```
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use serde::{Deserialize, Serialize};

use super::double_loop::{DoubleLoop, DoubleLoopState, OuterOptimizer};
use crate::core::error::check_at_least;
use crate::core::{
    Batch, Diagnostics, Problem, Result, Rng, SamplingMode, Schedule, Vector, VectorExt,
};
use crate::hypergrad::Hypergradient;
use crate::hypergrad::meta_unrolled::{MetaBatch, MetaState, adapt, unrolled_spec};

/// Configuration of FO-MAML.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FomamlConfig {
    /// Tasks per meta-step.
    pub meta_batch: usize,
    /// How tasks are drawn.
    pub sampling: SamplingMode,
    /// γ_t: meta step size.
    pub outer_lr: Schedule,
    /// SGD or Adam on the meta-gradient.
    pub outer_optimizer: OuterOptimizer,
}

impl Default for FomamlConfig {
    fn default() -> Self {
        Self {
            meta_batch: 5,
            sampling: SamplingMode::Shuffled,
            outer_lr: Schedule::constant(0.1),
            outer_optimizer: OuterOptimizer::Sgd,
        }
    }
}

/// The first-order meta-gradient g_FO = mean_j ∇L_j(θ_r^j).
#[derive(Clone, Debug, PartialEq)]
pub struct FirstOrderMetaGradient {
    /// Meta-batch settings.
    pub batch: MetaBatch,
}

impl Hypergradient for FirstOrderMetaGradient {
    type State = MetaState;

    fn init(&self, problem: &Problem, y0: Vector, rng: &mut Rng) -> Result<MetaState> {
        MetaState::init(problem, y0, self.batch, rng, "fomaml", false)
    }

    fn estimate(
        &self,
        problem: &Problem,
        phi: &Vector,
        st: &mut MetaState,
        _rng: &mut Rng,
        out: &mut Vector,
    ) -> Result<Diagnostics> {
        let spec = unrolled_spec(problem, "fomaml", false)?;
        let (f, g) = (problem.f(), problem.g());
        let m = st.begin();
        let w = &mut st.work;
        let [theta, grad, g_fo] = w.vectors.vectors([phi.nrows(); 3]);
        out.set_zero();
        for &j in &w.tasks {
            // Inner loop: θ₀ = φ, θ_{k+1} = θ_k − α∇l_j(θ_k).
            adapt(g, phi, j, &spec, None, theta, grad);
            // §7.1: g_FO = ∇L_j(θ_r); ĥ = mean over the meta-batch.
            f.grad_y(phi, theta, Batch::Indices(&[j]), g_fo);
            out.axpy(1.0 / m as f64, g_fo);
            st.y.axpy(1.0 / m as f64, theta);
        }
        Ok(Diagnostics::new())
    }

    fn inner_iterate<'s>(&self, st: &'s MetaState) -> &'s Vector {
        &st.y
    }
}

/// FO-MAML: a double loop over the first-order meta-gradient.
pub type Fomaml = DoubleLoop<FirstOrderMetaGradient>;
/// State of [`Fomaml`].
pub type FomamlState = DoubleLoopState<MetaState>;

impl FomamlConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check_at_least("meta_batch", self.meta_batch, 1)?;
        self.outer_lr.validate("outer_lr")?;
        self.outer_optimizer.validate("outer_optimizer")
    }

    /// The only constructor of [`Fomaml`].
    pub fn build(self) -> Result<Fomaml> {
        self.validate()?;
        Ok(DoubleLoop {
            name: "fomaml",
            hypergrad: FirstOrderMetaGradient {
                batch: MetaBatch {
                    size: self.meta_batch,
                    sampling: self.sampling,
                },
            },
            outer_lr: self.outer_lr,
            outer_optimizer: self.outer_optimizer,
        })
    }
}
