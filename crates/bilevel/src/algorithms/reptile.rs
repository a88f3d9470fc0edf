//! # Reptile
//!
//! A. Nichol, J. Achiam, J. Schulman. *On First-Order Meta-Learning Algorithms.* arXiv:1803.02999
//! (2018). algorithms.md §8.6.
//!
//! Moves the initialisation toward the task-adapted parameters; no query gradient at all.
//! With the meta-batch version of the paper (Alg. 2):
//!
//! ## Update (one meta-iteration t)
//! 1. Draw a meta-batch 𝒯 of `meta_batch` tasks.
//! 2. For each task j: θ₀ = φ_t, $\theta_{k+1} = \theta_k - \alpha \nabla l_j(\theta_k)$, k < r
//!    (r SGD steps on the task's support loss; the problem's r and α).
//! 3. Alg. 2: $\phi_{t+1} = \phi_t + \varepsilon_t \frac{1}{|\mathcal T|}\sum_j (\theta_r^j -
//!    \phi_t)$, i.e. a double-loop step with direction $\hat h = \frac{1}{|\mathcal T|}\sum_j
//!    (\phi_t - \theta_r^j)$ and outer step ε_t = `outer_lr` (or Adam on ĥ).
//!
//! ĥ is not an estimate of ∇M: Reptile's fixed points (mean_j θ_r^j(φ) = φ) are stationary points
//! of M only in special cases, e.g. a single task whose query loss is its support loss: with
//! α < 2/L, GD strictly decreases l away from stationary points, so θ_r = φ ⟺ ∇l(φ) = 0, and
//! then θ_r = φ gives ∇M(φ) = Π(I − αH_k)∇l(φ) = 0. The convergence table runs it on such an
//! instance.
//! The paper's inner optimiser is Adam; here the inner loop is the problem's plain SGD (the same
//! loop that defines M), so Reptile and MAML adapt identically.
//!
//! ## Oracle calls per iteration (m = meta-batch size; checked by `tests/it/oracle_counts.rs`)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | m·r | 0 | one task each |
//! | every other | 0 | 0 | |
//!
//! ## Parameters
//! r and α belong to the problem.
//!
//! | field | paper | default | range |
//! |-------|-------|---------|-------|
//! | `meta_batch` | n (tasks per iteration) | 5 | ≥ 1 |
//! | `sampling` | — | `shuffled` | `shuffled`, `with_replacement`, `contiguous` |
//! | `outer_lr` | ε (outer step size) | `constant 0.1` | schedule |
//! | `outer_optimizer` | — | `{ kind = "sgd" }` | `sgd`, `adam { beta1, beta2, eps }` |
//!
//! ## Example
//! ```
//! use bilevel::prelude::*;
//! use bilevel::problems::meta_linear::MetaLinearConfig;
//! let problem = MetaLinearConfig { tasks: 1, query_is_support: true, ..Default::default() }
//!     .build()
//!     .unwrap();
//! let solver = ReptileConfig { outer_lr: Schedule::constant(0.5), ..Default::default() }
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
use crate::core::{Diagnostics, Problem, Result, Rng, SamplingMode, Schedule, Vector, VectorExt};
use crate::hypergrad::Hypergradient;
use crate::hypergrad::meta_unrolled::{MetaBatch, MetaState, adapt, unrolled_spec};

/// Configuration of Reptile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReptileConfig {
    /// Tasks per meta-step.
    pub meta_batch: usize,
    /// How tasks are drawn.
    pub sampling: SamplingMode,
    /// ε_t: outer step size.
    pub outer_lr: Schedule,
    /// SGD or Adam on the Reptile direction.
    pub outer_optimizer: OuterOptimizer,
}

impl Default for ReptileConfig {
    fn default() -> Self {
        Self {
            meta_batch: 5,
            sampling: SamplingMode::Shuffled,
            outer_lr: Schedule::constant(0.1),
            outer_optimizer: OuterOptimizer::Sgd,
        }
    }
}

/// The Reptile direction mean_j (φ − θ_r^j).
#[derive(Clone, Debug, PartialEq)]
pub struct ReptileDirection {
    /// Meta-batch settings.
    pub batch: MetaBatch,
}

impl Hypergradient for ReptileDirection {
    type State = MetaState;

    fn init(&self, problem: &Problem, y0: Vector, rng: &mut Rng) -> Result<MetaState> {
        MetaState::init(problem, y0, self.batch, rng, "reptile", false)
    }

    fn estimate(
        &self,
        problem: &Problem,
        phi: &Vector,
        st: &mut MetaState,
        _rng: &mut Rng,
        out: &mut Vector,
    ) -> Result<Diagnostics> {
        let spec = unrolled_spec(problem, "reptile", false)?;
        let g = problem.g();
        let m = st.begin();
        let w = &mut st.work;
        let [theta, grad] = w.vectors.vectors([phi.nrows(); 2]);
        for &j in &w.tasks {
            // Alg. 2: θ_r^j = r SGD steps on task j from φ.
            adapt(g, phi, j, &spec, None, theta, grad);
            st.y.axpy(1.0 / m as f64, theta);
        }
        // Alg. 2: φ ← φ + ε mean_j(θ_r^j − φ), i.e. ĥ = φ − mean_j θ_r^j.
        out.assign(phi);
        out.axpy(-1.0, &st.y);
        Ok(Diagnostics::new())
    }

    fn inner_iterate<'s>(&self, st: &'s MetaState) -> &'s Vector {
        &st.y
    }
}

/// Reptile as a double loop: x ← x − ε ĥ with ĥ = φ − mean_j θ_r^j.
pub type Reptile = DoubleLoop<ReptileDirection>;
/// State of [`Reptile`].
pub type ReptileState = DoubleLoopState<MetaState>;

impl ReptileConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check_at_least("meta_batch", self.meta_batch, 1)?;
        self.outer_lr.validate("outer_lr")?;
        self.outer_optimizer.validate("outer_optimizer")
    }

    /// The only constructor of [`Reptile`].
    pub fn build(self) -> Result<Reptile> {
        self.validate()?;
        Ok(DoubleLoop {
            name: "reptile",
            hypergrad: ReptileDirection {
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
