//! # ANIL — Almost No Inner Loop
//!
//! A. Raghu, M. Raghu, S. Bengio, O. Vinyals. *Rapid Learning or Feature Reuse? Towards
//! Understanding the Effectiveness of MAML.* ICLR 2020 (arXiv:1909.09157). algorithms.md §8.6.
//!
//! MAML in which the inner loop adapts only the head (the problem's
//! [`UnrolledSpec::head`](crate::core::UnrolledSpec) coordinates, e.g. the task-specific linear
//! head of `meta_linear`); the body is shared, left unchanged by the inner loop, and receives its
//! meta-gradient through the head adaptation (the head's inner steps depend on the body).
//!
//! ## Update (one meta-iteration t; P = projection on the head coordinates)
//! 1. Draw a meta-batch 𝒯 of `meta_batch` tasks.
//! 2. For each task j: θ₀ = φ_t, $\theta_{k+1} = \theta_k - \alpha P \nabla l_j(\theta_k)$
//!    (body fixed, head adapted), k < r, storing θ₀..θ_r.
//! 3. Reverse sweep through the head-only steps: the step map has Jacobian I − αPH_k, so
//!    $a \leftarrow \nabla L_j(\theta_r)$, then for k = r−1, …, 0:
//!    $a \leftarrow a - \alpha H_k (P a)$. The body block of H_k P (∂²l/∂body ∂head) is the
//!    path by which the body gets its meta-gradient.
//! 4. $\hat h = \frac{1}{|\mathcal T|}\sum_j a_j$, $\phi_{t+1} = \phi_t - \gamma_t \hat h$ (or Adam).
//!
//! ĥ is the exact gradient of the ANIL meta-objective M_head(φ) = mean_j L_j(θ_r^j) with the
//! head-only inner loop (on `meta_linear`, the Reference with `reference_adapts = "head"`). It
//! shares the unrolled reverse-mode code with MAML (it is MAML's estimator with P ≠ I).
//!
//! ## Oracle calls per iteration (m = meta-batch size; checked by `tests/it/oracle_counts.rs`)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | m·r | m | one task each |
//! | hvp_yy | m·r (on P a) | – | one task each |
//! | grad_x, cross_xy | 0 | 0 | |
//!
//! The HVPs are full products on a head-supported vector; a problem with a cheap head-only HVP
//! could exploit that, this implementation does not assume one.
//!
//! ## Parameters
//! r, α and the head range belong to the problem.
//!
//! | field | paper | default | range |
//! |-------|-------|---------|-------|
//! | `meta_batch` | tasks per meta-step | 5 | ≥ 1 |
//! | `sampling` | — | `shuffled` | `shuffled`, `with_replacement`, `contiguous` |
//! | `outer_lr` | β | `constant 0.1` | schedule |
//! | `outer_optimizer` | — | `{ kind = "sgd" }` | `sgd`, `adam { beta1, beta2, eps }` |
//!
//! ## Example
//! ```
//! use bilevel::prelude::*;
//! use bilevel::problems::meta_linear::{Adapted, MetaLinearConfig};
//! let problem = MetaLinearConfig { reference_adapts: Adapted::Head, ..Default::default() }
//!     .build()
//!     .unwrap();
//! let solver = AnilConfig { meta_batch: 100, ..Default::default() }.build().unwrap();
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
use super::maml::ExactMetaGradient;
use crate::core::error::check_at_least;
use crate::core::{Result, SamplingMode, Schedule};
use crate::hypergrad::meta_unrolled::{MetaBatch, MetaState};

/// Configuration of ANIL.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnilConfig {
    /// Tasks per meta-step.
    pub meta_batch: usize,
    /// How tasks are drawn.
    pub sampling: SamplingMode,
    /// γ_t: meta step size.
    pub outer_lr: Schedule,
    /// SGD or Adam on the meta-gradient.
    pub outer_optimizer: OuterOptimizer,
}

impl Default for AnilConfig {
    fn default() -> Self {
        Self {
            meta_batch: 5,
            sampling: SamplingMode::Shuffled,
            outer_lr: Schedule::constant(0.1),
            outer_optimizer: OuterOptimizer::Sgd,
        }
    }
}

/// ANIL: MAML's exact estimator with a head-only inner loop.
pub type Anil = DoubleLoop<ExactMetaGradient>;
/// State of [`Anil`].
pub type AnilState = DoubleLoopState<MetaState>;

impl AnilConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check_at_least("meta_batch", self.meta_batch, 1)?;
        self.outer_lr.validate("outer_lr")?;
        self.outer_optimizer.validate("outer_optimizer")
    }

    /// The only constructor of [`Anil`].
    pub fn build(self) -> Result<Anil> {
        self.validate()?;
        Ok(DoubleLoop {
            name: "anil",
            hypergrad: ExactMetaGradient {
                name: "anil",
                batch: MetaBatch {
                    size: self.meta_batch,
                    sampling: self.sampling,
                },
                head_only: true,
            },
            outer_lr: self.outer_lr,
            outer_optimizer: self.outer_optimizer,
        })
    }
}
