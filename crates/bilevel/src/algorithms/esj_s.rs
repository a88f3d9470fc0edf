//! # ESJ-S (PZOBO-S) — stochastic bilevel optimisation with an evolution-strategies Jacobian
//!
//! D. Sow, K. Ji, Y. Liang. *ES-Based Jacobian Enables Faster Bilevel Optimization* (arXiv v1),
//! published as *On the Convergence Theory for Hessian-Free Bilevel Algorithms*, NeurIPS 2022
//! (arXiv:2110.07004), where the method is called **PZOBO-S**. algorithms.md §4.4–4.5.
//!
//! **Alias:** `kind = "pzobo_s"` is accepted everywhere `kind = "esj_s"` is: the same
//! [`EsjSConfig`], the same solver; traces and checkpoints carry the canonical name `esj_s`.
//!
//! ESJ ([`esj`](super::esj)) with minibatches. Common random numbers are essential (§4.4): at
//! inner step t one batch B_t is drawn and used by the unperturbed trajectory AND by every
//! perturbed one, so that δⱼ = (y_T^j − y_T)/μ differences out the sampling noise instead of
//! dividing it by μ. The outer gradients use an independent batch.
//!
//! ## Update (one outer iteration k; algorithms.md §4.3 with the batches of §4.4)
//! 1. Draw inner batches B_1, …, B_T and an independent outer batch B_F.
//! 2. $y_0 = y_{\mathrm{warm}}$; $y_T = \mathrm{SGD}_T(x_k; y_0; B_{1..T})$, step t:
//!    $y \leftarrow y - \alpha \nabla_y g(x_k, y; B_t)$.
//! 3. Draw $u_1, \dots, u_Q \sim \mathcal N(0, I_p)$; for each j:
//!    $y_T^j = \mathrm{SGD}_T(x_k + \mu u_j; y_0; B_{1..T})$ (same start, same batches) and
//!    $\delta_j = (y_T^j - y_T)/\mu$.
//! 4. $\hat h = \nabla_x f(x_k, y_T; B_F) + \frac{1}{Q} \sum_j \langle \delta_j,
//!    \nabla_y f(x_k, y_T; B_F) \rangle\thinspace u_j$.
//! 5. $x_{k+1} = x_k - \beta_k \hat h$ (or Adam), $y_{\mathrm{warm}} = y_T$.
//!
//! The official deep hyper-representation script uses Adam as the inner optimiser shared by
//! both trajectories; §4.4 recommends (and this implementation uses) plain SGD with identical
//! batch sequences, so every trajectory has the same (stateless) optimiser.
//!
//! ## Oracle calls per iteration (checked by `tests/it/oracle_counts.rs`)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | (Q + 1)·T | 1 | B_t (each replayed Q + 1 times) / B_F |
//! | grad_x | – | 1 | B_F |
//! | hvp_yy, cross_xy | 0 | – | |
//!
//! ## Parameters
//! Defaults as ESJ (benchopt's PZOBO: T = 10, μ = 0.1, Q = 10, constant step 0.1) and a
//! minibatch of 64, the batch size of the reference benchmark's stochastic solvers (benchopt's
//! PZOBO itself is full batch: it has no stochastic variant). The official scripts use Q = 1.
//!
//! | field | paper | default | range |
//! |-------|-------|---------|-------|
//! | `inner_steps` | T | 10 | ≥ 1 |
//! | `inner_lr` | α | 0.1 | > 0 |
//! | `directions` | Q | 10 | ≥ 1 |
//! | `smoothing` | μ | 0.1 | > 0 |
//! | `direction` | law of u | `{ kind = "gaussian" }` | `gaussian`, `unit_sphere { rescale }` |
//! | `warm_start` | — | true | |
//! | `batch_size` | — | 64 | ≥ 1 |
//! | `sampling` | — | `shuffled` | `shuffled`, `with_replacement`, `contiguous` |
//! | `outer_lr` | β | `constant 0.1` | schedule |
//! | `outer_optimizer` | — | `{ kind = "sgd" }` | `sgd`, `adam { beta1, beta2, eps }` |
//!
//! ## Example
//! ```
//! use bilevel::prelude::*;
//! let problem = bilevel::problems::quadratic::tiny();
//! let solver = EsjSConfig { batch_size: 2, inner_lr: 0.3, ..Default::default() }
//!     .build()
//!     .unwrap();
//! let (x0, y0) = problem.start();
//! let mut state = solver.init(&problem, x0, y0, 0).unwrap();
//! for _ in 0..50 {
//!     solver.step(&problem, &mut state).unwrap();
//! }
//! assert_eq!(state.t, 50);
//! ```
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use serde::{Deserialize, Serialize};

use super::double_loop::{DoubleLoop, DoubleLoopState, OuterOptimizer};
use crate::core::error::check_at_least;
use crate::core::{Result, SamplingMode, Schedule};
use crate::hypergrad::{Direction, EsJacobian, EsJacobianState};

/// Configuration of ESJ-S (alias PZOBO-S).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EsjSConfig {
    /// T: inner SGD steps per trajectory.
    pub inner_steps: usize,
    /// α: inner step size.
    pub inner_lr: f64,
    /// Q: ES directions per outer iteration.
    pub directions: usize,
    /// μ: smoothing radius.
    pub smoothing: f64,
    /// The law of the directions.
    pub direction: Direction,
    /// Warm-start each outer iteration from the previous unperturbed y_T.
    pub warm_start: bool,
    /// Size of every inner batch B_t and of the outer batch B_F.
    pub batch_size: usize,
    /// How minibatches are drawn.
    pub sampling: SamplingMode,
    /// β_k: outer step size.
    pub outer_lr: Schedule,
    /// SGD or Adam on ĥ.
    pub outer_optimizer: OuterOptimizer,
}

impl Default for EsjSConfig {
    fn default() -> Self {
        Self {
            inner_steps: 10,
            inner_lr: 0.1,
            directions: 10,
            smoothing: 0.1,
            direction: Direction::Gaussian,
            warm_start: true,
            batch_size: 64,
            sampling: SamplingMode::Shuffled,
            outer_lr: Schedule::constant(0.1),
            outer_optimizer: OuterOptimizer::Sgd,
        }
    }
}

/// ESJ-S: a double loop over the ES-Jacobian estimator with minibatches and common random
/// numbers.
pub type EsjS = DoubleLoop<EsJacobian>;
/// State of [`EsjS`].
pub type EsjSState = DoubleLoopState<EsJacobianState>;

impl EsjSConfig {
    fn estimator(&self) -> EsJacobian {
        EsJacobian {
            inner_steps: self.inner_steps,
            inner_lr: self.inner_lr,
            directions: self.directions,
            smoothing: self.smoothing,
            direction: self.direction,
            warm_start: self.warm_start,
            batch_size: Some(self.batch_size),
            sampling: self.sampling,
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check_at_least("batch_size", self.batch_size, 1)?;
        self.estimator().validate()?;
        self.outer_lr.validate("outer_lr")?;
        self.outer_optimizer.validate("outer_optimizer")
    }

    /// The only constructor of [`EsjS`].
    pub fn build(self) -> Result<EsjS> {
        self.validate()?;
        Ok(DoubleLoop {
            name: "esj_s",
            hypergrad: self.estimator(),
            outer_lr: self.outer_lr,
            outer_optimizer: self.outer_optimizer,
        })
    }
}
