//! # HOAG — hyperparameter optimization with approximate gradient
//!
//! F. Pedregosa. *Hyperparameter optimization with approximate gradient.* ICML 2016
//! (arXiv:1602.02355). algorithms.md §8.2.
//!
//! ## Update (paper, Alg. 1, steps (i)–(iv) as we recall them; iteration k, deterministic)
//! With a summable tolerance sequence ε_k (Σ ε_k < ∞):
//! 1. (i) Solve the inner problem to tolerance ε_k: GD steps
//!    $y \leftarrow y - \alpha \nabla_y g(x_k, y)$, warm-started, until
//!    $\Vert \nabla_y g(x_k, y)\Vert  \le \varepsilon_k$ (or `max_inner_steps`).
//! 2. (ii) Solve $\nabla^2_{yy} g\thinspace v = \nabla_y f$ by conjugate gradient, warm-started from
//!    v_{k−1}, until $\Vert \nabla^2_{yy} g\thinspace v - \nabla_y f\Vert  \le \varepsilon_k \Vert \nabla_y f\Vert $ (or
//!    `max_cg_iters`).
//! 3. (iii) $p_k = \nabla_x f - \nabla^2_{xy} g\thinspace v$ and (iv) $x_{k+1} = x_k - \gamma_k p_k$.
//!
//! Because the tolerances are summable, the hypergradient errors are summable and the iterates
//! converge like exact gradient descent (the paper's Theorem 2).
//!
//! Deviations (documented choices): the CG stopping test is relative to ‖∇ᵧf‖ (the paper's is
//! absolute; both → 0 summably, they differ by the bounded factor ‖∇ᵧf‖); the paper's adaptive
//! outer step (1/L with L increased or decreased from the change in the outer objective) is not
//! implemented — `outer_lr` is a schedule. The tolerance laws (quadratic 0.1/k², cubic, or
//! exponential 0.1·0.9^k) are the paper's experiments' as we recall them \[recall\].
//!
//! ## Oracle calls per iteration (checked by `tests/it/oracle_counts.rs`)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | S + 1 (S inner steps until the tolerance; the last gradient is the test) | 1 | full |
//! | grad_x | – | 1 | full |
//! | hvp_yy | CG iterations until the tolerance (+1 for the warm-start residual once v ≠ 0) | – | full |
//! | cross_xy | 1 | – | full |
//!
//! ## Parameters
//! | field | paper | default | range |
//! |-------|-------|---------|-------|
//! | `tolerance` | ε_k | `{ kind = "power", c = 0.1, a = 2 }` (ε_k = c/(k+1)^a) | power with a > 1, or `{ kind = "geometric", c, rate }` (c·rate^k, rate < 1) |
//! | `inner_lr` | 1/L of the inner GD | 0.1 | > 0 (< 2/L_g) |
//! | `max_inner_steps` | — | 1000 | ≥ 1 |
//! | `max_cg_iters` | — | 100 | ≥ 1 |
//! | `outer_lr` | γ (paper: 1/L, adaptive) | `constant 0.1` | schedule |
//!
//! ## Example
//! ```
//! use bilevel::prelude::*;
//! let problem = bilevel::problems::quadratic::tiny();
//! let solver = HoagConfig {
//!     inner_lr: 0.5,
//!     outer_lr: Schedule::constant(0.5),
//!     ..Default::default()
//! }
//! .build()
//! .unwrap();
//! let (x0, y0) = problem.start();
//! let mut state = solver.init(&problem, x0, y0, 0).unwrap();
//! for _ in 0..200 {
//!     solver.step(&problem, &mut state).unwrap();
//! }
//! let truth = problem.reference().unwrap().evaluate(&state.x).unwrap();
//! assert!(truth.hypergradient.norm() < 1e-5);
//! ```
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use serde::{Deserialize, Serialize};

use super::double_loop::{DoubleLoop, DoubleLoopState, OuterOptimizer};
use crate::core::error::{Error, check_at_least, check_positive};
use crate::core::{Diagnostics, Problem, Result, Rng, SamplingMode, Schedule, Vector};
use crate::hypergrad::{Hypergradient, Implicit, ImplicitState, LinearSystem};
use crate::linsolve::CgParams;

/// The summable tolerance sequence ε_k.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ToleranceSchedule {
    /// ε_k = c / (k + 1)^a, a > 1 (a = 2: the paper's "quadratic", a = 3: "cubic").
    Power {
        /// Scale c.
        c: f64,
        /// Exponent a > 1.
        a: f64,
    },
    /// ε_k = c · rate^k, 0 < rate < 1 (the paper's "exponential").
    Geometric {
        /// Scale c.
        c: f64,
        /// Ratio in (0, 1).
        rate: f64,
    },
}

impl ToleranceSchedule {
    /// ε_k.
    pub fn at(&self, k: u64) -> f64 {
        match *self {
            ToleranceSchedule::Power { c, a } => c / (k as f64 + 1.0).powf(a),
            ToleranceSchedule::Geometric { c, rate } => c * rate.powf(k as f64),
        }
    }
    fn validate(&self, field: &str) -> Result<()> {
        match *self {
            ToleranceSchedule::Power { c, a } => {
                check_positive(&format!("{field}.c"), c)?;
                if !(a.is_finite() && a > 1.0) {
                    return Err(Error::config(
                        format!("{field}.a"),
                        format!("must be > 1 so that the tolerances are summable, got {a}"),
                    ));
                }
                Ok(())
            }
            ToleranceSchedule::Geometric { c, rate } => {
                check_positive(&format!("{field}.c"), c)?;
                if !(rate > 0.0 && rate < 1.0) {
                    return Err(Error::config(
                        format!("{field}.rate"),
                        format!(
                            "must be in (0, 1) so that the tolerances are summable, got {rate}"
                        ),
                    ));
                }
                Ok(())
            }
        }
    }
}

/// Configuration of HOAG.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HoagConfig {
    /// ε_k, the tolerance of both the inner solve and the linear system.
    pub tolerance: ToleranceSchedule,
    /// Step of the inner GD.
    pub inner_lr: f64,
    /// Cap on the inner steps per outer iteration.
    pub max_inner_steps: usize,
    /// Cap on the CG iterations per outer iteration.
    pub max_cg_iters: usize,
    /// γ_k: outer step size.
    pub outer_lr: Schedule,
}

impl Default for HoagConfig {
    fn default() -> Self {
        Self {
            tolerance: ToleranceSchedule::Power { c: 0.1, a: 2.0 },
            inner_lr: 0.1,
            max_inner_steps: 1000,
            max_cg_iters: 100,
            outer_lr: Schedule::constant(0.1),
        }
    }
}

/// The HOAG estimator: the implicit estimator with tolerances ε_k that decrease with k.
#[derive(Clone, Debug, PartialEq)]
pub struct HoagEstimator {
    implicit: Implicit,
    tolerance: ToleranceSchedule,
    max_inner_steps: usize,
    max_cg_iters: usize,
}

/// State of [`HoagEstimator`]: the implicit warm starts and the outer iteration k.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HoagEstimatorState {
    /// The index k of the next estimate.
    pub k: u64,
    /// y, v and (unused) samplers.
    pub implicit: ImplicitState,
}

impl Hypergradient for HoagEstimator {
    type State = HoagEstimatorState;

    fn init(&self, problem: &Problem, y0: Vector, rng: &mut Rng) -> Result<Self::State> {
        Ok(HoagEstimatorState {
            k: 0,
            implicit: self.implicit.init(problem, y0, rng)?,
        })
    }

    fn estimate(
        &self,
        problem: &Problem,
        x: &Vector,
        st: &mut Self::State,
        rng: &mut Rng,
        out: &mut Vector,
    ) -> Result<Diagnostics> {
        let eps = self.tolerance.at(st.k);
        // Alg. 1 (i): inner GD until ‖∇ᵧg(x_k, y)‖ ≤ ε_k.
        let (steps, grad_norm) = self.implicit.inner_phase_to_tolerance(
            problem,
            x,
            &mut st.implicit,
            self.max_inner_steps,
            self.implicit.inner_lr,
            eps,
        );
        // Alg. 1 (ii)–(iii): CG to ‖Av − b‖ ≤ ε_k ‖b‖, then p_k = ∇ₓf − ∇²ₓᵧg v.
        let linear = LinearSystem::Cg(CgParams {
            max_iters: self.max_cg_iters,
            rel_tol: eps,
        });
        let mut diagnostics =
            self.implicit
                .hypergradient_phase(problem, x, &mut st.implicit, &linear, rng, out)?;
        diagnostics.set("tolerance", eps);
        diagnostics.set("inner_steps", steps as f64);
        diagnostics.set("inner_grad_norm", grad_norm);
        st.k += 1;
        Ok(diagnostics)
    }

    fn inner_iterate<'s>(&self, st: &'s Self::State) -> &'s Vector {
        &st.implicit.y
    }

    fn adjoint<'s>(&self, st: &'s Self::State) -> Option<&'s Vector> {
        Some(&st.implicit.v)
    }
}

/// HOAG: a double loop over the implicit estimator with decreasing tolerances.
pub type Hoag = DoubleLoop<HoagEstimator>;
/// State of [`Hoag`].
pub type HoagState = DoubleLoopState<HoagEstimatorState>;

impl HoagConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        self.tolerance.validate("tolerance")?;
        check_positive("inner_lr", self.inner_lr)?;
        check_at_least("max_inner_steps", self.max_inner_steps, 1)?;
        check_at_least("max_cg_iters", self.max_cg_iters, 1)?;
        self.outer_lr.validate("outer_lr")
    }

    /// The only constructor of [`Hoag`].
    pub fn build(self) -> Result<Hoag> {
        self.validate()?;
        Ok(DoubleLoop {
            name: "hoag",
            hypergrad: HoagEstimator {
                implicit: Implicit {
                    inner_steps: 0,
                    inner_lr: self.inner_lr,
                    linear: LinearSystem::Cg(CgParams::default()),
                    warm_start_v: true,
                    batch_size: None,
                    sampling: SamplingMode::Shuffled,
                },
                tolerance: self.tolerance,
                max_inner_steps: self.max_inner_steps,
                max_cg_iters: self.max_cg_iters,
            },
            outer_lr: self.outer_lr,
            outer_optimizer: OuterOptimizer::Sgd,
        })
    }
}
