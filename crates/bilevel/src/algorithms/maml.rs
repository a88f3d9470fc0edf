//! # MAML — model-agnostic meta-learning (exact meta-gradient)
//!
//! C. Finn, P. Abbeel, S. Levine. *Model-Agnostic Meta-Learning for Fast Adaptation of Deep
//! Networks.* ICML 2017 (arXiv:1703.03400). algorithms.md §7.1 and §8.6; the q = 1 case of
//! UFO-BLO (§7.3).
//!
//! Runs on unrolled (meta-learning) problems ([`UnrolledSpec`](crate::core::UnrolledSpec)):
//! x = φ is the initialisation, each task adapts it by the problem's r SGD steps of size α on its
//! support loss l_j (g on task j), and M(φ) = mean_j L_j(θ_r^j) with L_j the query loss (f on
//! task j). The meta-gradient is exact: reverse mode through the unrolled loop with the stored
//! iterates ([`meta_unrolled`](crate::hypergrad::meta_unrolled), shared with ANIL and UFO-BLO).
//!
//! ## Update (one meta-iteration t)
//! 1. Draw a meta-batch 𝒯 of `meta_batch` tasks.
//! 2. For each task j ∈ 𝒯 (Finn et al., Alg. 1, inner loop): θ₀ = φ_t,
//!    $\theta_{k+1} = \theta_k - \alpha \nabla l_j(\theta_k)$, k < r, storing θ₀..θ_r.
//! 3. Reverse sweep (§7.1 product formula): $a \leftarrow \nabla L_j(\theta_r)$, then for
//!    k = r−1, …, 0: $a \leftarrow a - \alpha \nabla^2 l_j(\theta_k)\thinspace a$; so
//!    $a = \prod_{k=0}^{r-1} (I - \alpha H_k)\thinspace \nabla L_j(\theta_r) = \nabla M_j(\phi_t)$.
//! 4. $\hat h = \frac{1}{|\mathcal T|} \sum_{j \in \mathcal T} \nabla M_j(\phi_t)$ and
//!    $\phi_{t+1} = \phi_t - \gamma_t \hat h$ (or Adam, `outer_optimizer`).
//!
//! With the full meta-batch ĥ equals the problem Reference's ∇M (tested against the forward-mode
//! reference and finite differences of M).
//!
//! ## Oracle calls per iteration (m = meta-batch size; checked by `tests/it/oracle_counts.rs`)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | m·r | m | one task each |
//! | hvp_yy | m·r | – | one task each |
//! | grad_x, cross_xy | 0 | 0 | |
//!
//! ## Parameters
//! r and α belong to the problem (its unrolled spec), not to the solver.
//!
//! | field | paper | default | range |
//! |-------|-------|---------|-------|
//! | `meta_batch` | tasks per meta-step | 5 (UFOM code) | ≥ 1 (clipped to the task count) |
//! | `sampling` | — | `shuffled` | `shuffled`, `with_replacement`, `contiguous` |
//! | `outer_lr` | β (meta step) | `constant 0.1` | schedule |
//! | `outer_optimizer` | — | `{ kind = "sgd" }` | `sgd`, `adam { beta1, beta2, eps }` |
//!
//! ## Example
//! ```
//! use bilevel::prelude::*;
//! use bilevel::problems::meta_linear::MetaLinearConfig;
//! let problem = MetaLinearConfig::default().build().unwrap();
//! let solver = MamlConfig { meta_batch: 100, ..Default::default() }.build().unwrap();
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
use crate::hypergrad::meta_unrolled::{
    MetaBatch, MetaState, adapt_recording, reverse_sweep, unrolled_spec,
};

/// Configuration of MAML.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MamlConfig {
    /// Tasks per meta-step.
    pub meta_batch: usize,
    /// How tasks are drawn.
    pub sampling: SamplingMode,
    /// γ_t: meta step size.
    pub outer_lr: Schedule,
    /// SGD or Adam on the meta-gradient.
    pub outer_optimizer: OuterOptimizer,
}

impl Default for MamlConfig {
    fn default() -> Self {
        Self {
            meta_batch: 5,
            sampling: SamplingMode::Shuffled,
            outer_lr: Schedule::constant(0.1),
            outer_optimizer: OuterOptimizer::Sgd,
        }
    }
}

/// The exact meta-gradient estimator (MAML; ANIL when `head_only`).
#[derive(Clone, Debug, PartialEq)]
pub struct ExactMetaGradient {
    /// The solver's name (for error messages).
    pub name: &'static str,
    /// Meta-batch settings.
    pub batch: MetaBatch,
    /// Adapt only the problem's head coordinates (ANIL).
    pub head_only: bool,
}

impl Hypergradient for ExactMetaGradient {
    type State = MetaState;

    fn init(&self, problem: &Problem, y0: Vector, rng: &mut Rng) -> Result<MetaState> {
        MetaState::init(problem, y0, self.batch, rng, self.name, self.head_only)
    }

    fn estimate(
        &self,
        problem: &Problem,
        phi: &Vector,
        st: &mut MetaState,
        _rng: &mut Rng,
        out: &mut Vector,
    ) -> Result<Diagnostics> {
        let spec = unrolled_spec(problem, self.name, self.head_only)?;
        let coords = if self.head_only {
            spec.head.map(|h| h.range())
        } else {
            None
        };
        let (f, g) = (problem.f(), problem.g());
        let m = st.begin();
        let w = &mut st.work;
        let [theta, grad, a, hv, pa] = w.vectors.vectors([phi.nrows(); 5]);
        out.set_zero();
        for &j in &w.tasks {
            // Alg. 1 inner loop: θ₀ = φ, θ_{k+1} = θ_k − α P∇l_j(θ_k), storing θ₀..θ_r.
            adapt_recording(
                g,
                phi,
                j,
                &spec,
                coords.clone(),
                theta,
                grad,
                &mut w.trajectory,
            );
            // §7.1: a = ∇L_j(θ_r), then a ← Π_k (I − αH_k P) a (reverse sweep).
            f.grad_y(phi, theta, Batch::Indices(&[j]), a);
            reverse_sweep(
                g,
                phi,
                j,
                spec.lr,
                coords.clone(),
                None,
                &w.trajectory,
                a,
                hv,
                pa,
            );
            // ĥ = mean over the meta-batch of ∇M_j(φ).
            out.axpy(1.0 / m as f64, a);
            st.y.axpy(1.0 / m as f64, theta);
        }
        Ok(Diagnostics::new())
    }

    fn inner_iterate<'s>(&self, st: &'s MetaState) -> &'s Vector {
        &st.y
    }
}

/// MAML: a double loop over the exact meta-gradient.
pub type Maml = DoubleLoop<ExactMetaGradient>;
/// State of [`Maml`].
pub type MamlState = DoubleLoopState<MetaState>;

impl MamlConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check_at_least("meta_batch", self.meta_batch, 1)?;
        self.outer_lr.validate("outer_lr")?;
        self.outer_optimizer.validate("outer_optimizer")
    }

    /// The only constructor of [`Maml`].
    pub fn build(self) -> Result<Maml> {
        self.validate()?;
        Ok(DoubleLoop {
            name: "maml",
            hypergrad: ExactMetaGradient {
                name: "maml",
                batch: MetaBatch {
                    size: self.meta_batch,
                    sampling: self.sampling,
                },
                head_only: false,
            },
            outer_lr: self.outer_lr,
            outer_optimizer: self.outer_optimizer,
        })
    }
}
