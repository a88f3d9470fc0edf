//! # BSA — bilevel stochastic approximation
//!
//! S. Ghadimi, M. Wang. *Approximation methods for bilevel programming.* arXiv:1802.02246, 2018.
//! algorithms.md §8.2 and §1.5.2 (HIA).
//!
//! ## Update (one iteration t, at the current (x_t, y_t); algorithms.md §8.2)
//! 1. Hypergradient at the *current* inner iterate: outer minibatch D_F,
//!    $b = \nabla_y f(x_t, y_t; D_F)$; HIA (§1.5.2): draw P uniform in {0, …, N − 1},
//!    $v = N\eta \prod_{j=1}^{P} (I - \eta \nabla^2_{yy} g(x_t, y_t; B_j))\thinspace b$;
//!    $\hat h = \nabla_x f(x_t, y_t; D_F) - \nabla^2_{xy} g(x_t, y_t; D_G)\thinspace v$.
//! 2. Outer step: $x_{t+1} = x_t - \gamma_t \hat h$.
//! 3. Inner SGD at the *new* x, warm-started: T steps
//!    $y \leftarrow y - \rho_t \nabla_y g(x_{t+1}, y; B_s)$, giving $y_{t+1}$.
//!
//! **Order of the inner loop vs. the hypergradient.** The double loops of this library
//! (`DoubleLoop`) run the inner loop at x_t *before* estimating ĥ(x_t); BSA runs it *after* the
//! x-step, at x_{t+1}. Gluing BSA's step 3 of iteration t to step 1 of iteration t + 1 gives
//! exactly "inner loop at x_{t+1}, then ĥ(x_{t+1})": the two orders make the same oracle calls
//! at the same points, except that BSA's very first ĥ is taken at y₀ without any inner steps.
//! The difference that remains is what a step reports: BSA's (x_{t+1}, y_{t+1}) has y already
//! adapted to the new x. (The samplers of each role are independent streams, so the call order
//! does not change the draws; with constant inner steps the x-sequences coincide with a double
//! loop that skips its first inner phase.)
//!
//! ## Oracle calls per iteration (checked by `tests/it/oracle_counts.rs`)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | T | 1 | B_s / D_F |
//! | grad_x | – | 1 | D_F |
//! | hvp_yy | P ∈ {0, …, N − 1} (random) | – | B_1..B_P |
//! | cross_xy | 1 | – | D_G |
//!
//! benchopt's BSA (as restated in algorithms.md §8.2) makes the same calls per iteration (HIA
//! with N = 10, T = 10 inner steps).
//!
//! ## Parameters
//! | field | paper | default | range |
//! |-------|-------|---------|-------|
//! | `inner_steps` | T (theory: growing ~ √t) | 10 | ≥ 0 |
//! | `inner_lr` | ρ_t | `inv_power { c = 0.1, a = 0.5 }` | schedule |
//! | `hia.max_terms` | N | 10 | ≥ 1 |
//! | `hia.step` | η | 0.1 | > 0 (< 1/L_g) |
//! | `outer_lr` | γ_t | `inv_power { c = 0.1, a = 0.5 }` | schedule |
//! | `batch_size` | — | 64 | ≥ 1 |
//! | `sampling` | — | `shuffled` | `shuffled`, `with_replacement`, `contiguous` |
//!
//! Defaults: the reference benchmark's (algorithms.md §9.9: steps 0.1/√(t+1), 10 inner and 10
//! HIA steps, batch 64).
//!
//! ## Example
//! ```
//! use bilevel::prelude::*;
//! let problem = bilevel::problems::quadratic::tiny();
//! let solver = BsaConfig { batch_size: 1, ..Default::default() }.build().unwrap();
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

use crate::core::error::check_at_least;
use crate::core::linalg::{Scratch, rng_from_seed, serde_vector};
use crate::core::{
    Diagnostics, Problem, Result, Rng, SamplingMode, Schedule, Solver, Vector, VectorExt,
};
use crate::hypergrad::{Hypergradient, Implicit, ImplicitState, LinearSystem};
use crate::linsolve::HiaParams;

/// Configuration of BSA.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BsaConfig {
    /// T: inner SGD steps per outer iteration (after the x-step).
    pub inner_steps: usize,
    /// ρ_t: inner step size.
    pub inner_lr: Schedule,
    /// N and η of the HIA estimator.
    pub hia: HiaParams,
    /// γ_t: outer step size.
    pub outer_lr: Schedule,
    /// Size of every minibatch.
    pub batch_size: usize,
    /// How minibatches are drawn.
    pub sampling: SamplingMode,
}

impl Default for BsaConfig {
    fn default() -> Self {
        Self {
            inner_steps: 10,
            inner_lr: Schedule::inv_power(0.1, 0.5),
            hia: HiaParams {
                max_terms: 10,
                step: 0.1,
            },
            outer_lr: Schedule::inv_power(0.1, 0.5),
            batch_size: 64,
            sampling: SamplingMode::Shuffled,
        }
    }
}

impl BsaConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        self.inner_lr.validate("inner_lr")?;
        self.hia.validate("hia")?;
        self.outer_lr.validate("outer_lr")?;
        check_at_least("batch_size", self.batch_size, 1)
    }

    /// The only constructor of [`Bsa`].
    pub fn build(self) -> Result<Bsa> {
        self.validate()?;
        let estimator = Implicit {
            inner_steps: self.inner_steps,
            inner_lr: self.inner_lr.scale(),
            linear: LinearSystem::Hia(self.hia),
            warm_start_v: false,
            batch_size: Some(self.batch_size),
            sampling: self.sampling,
        };
        Ok(Bsa {
            config: self,
            estimator,
        })
    }
}

/// BSA (validated configuration).
#[derive(Clone, Debug)]
pub struct Bsa {
    config: BsaConfig,
    estimator: Implicit,
}

/// State of [`Bsa`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BsaState {
    /// Outer iterate.
    #[serde(with = "serde_vector")]
    pub x: Vector,
    /// Iteration counter.
    pub t: u64,
    /// Draws HIA's truncation P.
    pub rng: Rng,
    /// The inner iterate y, the last v and the samplers.
    pub implicit: ImplicitState,
    #[serde(skip)]
    scratch: Scratch,
}

impl Solver for Bsa {
    type State = BsaState;

    fn name(&self) -> &'static str {
        "bsa"
    }

    fn init(&self, problem: &Problem, x: Vector, y: Vector, seed: u64) -> Result<BsaState> {
        let mut rng = rng_from_seed(seed, 0);
        let implicit = self.estimator.init(problem, y, &mut rng)?;
        Ok(BsaState {
            x,
            t: 0,
            rng,
            implicit,
            scratch: Scratch::default(),
        })
    }

    fn step(&self, problem: &Problem, s: &mut BsaState) -> Result<Diagnostics> {
        let [h] = s.scratch.vectors([s.x.nrows()]);
        let gamma = self.config.outer_lr.at(s.t);
        let rho = self.config.inner_lr.at(s.t);
        // Step 1: ĥ = ∇ₓf − ∇²ₓᵧg v_HIA at (x_t, y_t).
        let diagnostics = self.estimator.hypergradient_phase(
            problem,
            &s.x,
            &mut s.implicit,
            &self.estimator.linear,
            &mut s.rng,
            h,
        )?;
        // Step 2: x_{t+1} = x_t − γ_t ĥ.
        s.x.axpy(-gamma, h);
        // Step 3: T SGD steps y ← y − ρ_t ∇ᵧg(x_{t+1}, y; B_s).
        self.estimator
            .inner_phase(problem, &s.x, &mut s.implicit, self.config.inner_steps, rho);
        s.t += 1;
        Ok(diagnostics)
    }

    fn iterate<'s>(&self, s: &'s BsaState) -> (&'s Vector, &'s Vector) {
        (&s.x, &s.implicit.y)
    }

    /// The HIA estimate v of the last step (at (x_t, y_t) before the x-step), for
    /// `linsys_residual`.
    fn adjoint<'s>(&self, s: &'s BsaState) -> Option<&'s Vector> {
        self.estimator.adjoint(&s.implicit)
    }

    fn iteration(&self, s: &BsaState) -> u64 {
        s.t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problems::quadratic::QuadraticConfig;

    /// The documented equivalence: BSA's x-sequence equals that of the double loop "inner phase,
    /// then ĥ, then x-step" with its first inner phase skipped (same draws, same points).
    #[test]
    fn bsa_is_the_double_loop_with_the_first_inner_phase_skipped() {
        let problem = QuadraticConfig {
            dim_x: 3,
            dim_y: 5,
            n_inner: 40,
            n_outer: 40,
            ..Default::default()
        }
        .build()
        .unwrap();
        let config = BsaConfig {
            batch_size: 4,
            inner_steps: 3,
            ..Default::default()
        };
        let solver = config.clone().build().unwrap();
        let (x0, y0) = problem.start();
        let mut state = solver.init(&problem, x0.clone(), y0.clone(), 3).unwrap();

        let est = &solver.estimator;
        let mut rng = rng_from_seed(3, 0);
        let mut implicit = est.init(&problem, y0, &mut rng).unwrap();
        let mut x = x0;
        let mut h = Vector::zeros(x.nrows());
        for t in 0..6u64 {
            solver.step(&problem, &mut state).unwrap();
            if t > 0 {
                let rho = config.inner_lr.at(t - 1);
                est.inner_phase(&problem, &x, &mut implicit, config.inner_steps, rho);
            }
            est.hypergradient_phase(&problem, &x, &mut implicit, &est.linear, &mut rng, &mut h)
                .unwrap();
            x.axpy(-config.outer_lr.at(t), &h);
            assert_eq!(x.as_slice(), state.x.as_slice(), "iteration {t}");
        }
    }
}
