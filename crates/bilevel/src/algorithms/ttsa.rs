//! # TTSA — two-timescale stochastic approximation
//!
//! M. Hong, H.-T. Wai, Z. Wang, Z. Yang. *A two-timescale stochastic algorithm framework for
//! bilevel optimization: complexity analysis and application to actor-critic.* SIAM J. Optim.
//! 2023 (arXiv:2007.05170, 2020). algorithms.md §8.4 and §1.5.2 (HIA).
//!
//! ## Update (iteration k; the projection on a constraint set X is omitted: unconstrained x)
//! $$ y_{k+1} = y_k - \beta_k \nabla_y g(x_k, y_k; B_k), \tag{1} $$
//! $$ \hat h_k = \nabla_x f(x_k, y_{k+1}; B_F) - \nabla^2_{xy} g(x_k, y_{k+1}; B_G)\thinspace v_k, \qquad
//!    v_k = N\eta \prod_{j=1}^{P} \big(I - \eta \nabla^2_{yy} g(x_k, y_{k+1}; B_j)\big)
//!    \nabla_y f(x_k, y_{k+1}; B_F), \tag{2} $$
//! $$ x_{k+1} = x_k - \alpha_k \hat h_k, \tag{3} $$
//! with P uniform in {0, …, N − 1} (HIA, `hypergrad::PhiHat`). Two timescales: the inner step
//! β_k ~ k^{−2/5} decays more slowly than the outer step α_k ~ k^{−3/5}.
//!
//! ## Oracle calls per iteration (checked by `tests/it/oracle_counts.rs`)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | 1 | 1 | B_k / B_F |
//! | grad_x | – | 1 | B_F |
//! | hvp_yy | P ∈ {0, …, N − 1} (random) | – | B_1..B_P |
//! | cross_xy | 1 | – | B_G |
//!
//! benchopt's TTSA (as restated in algorithms.md §8.4) makes the same calls per iteration.
//!
//! ## Parameters
//! | field | paper | default | range |
//! |-------|-------|---------|-------|
//! | `inner_lr` | β_k | `inv_power { c = 0.1, a = 0.4 }` | schedule |
//! | `outer_lr` | α_k | `inv_power { c = 0.1, a = 0.6 }` | schedule |
//! | `hia.max_terms` | N | 10 | ≥ 1 |
//! | `hia.step` | η | 0.1 | > 0 (< 1/L_g) |
//! | `batch_size` | — | 64 | ≥ 1 |
//! | `sampling` | — | `shuffled` | `shuffled`, `with_replacement`, `contiguous` |
//!
//! Defaults: the reference benchmark's (algorithms.md §9.9: c = 0.1, exponents 0.4 / 0.6,
//! 10 HIA steps, batch 64).
//!
//! ## Example
//! ```
//! use bilevel::prelude::*;
//! let problem = bilevel::problems::quadratic::tiny();
//! let solver = TtsaConfig { batch_size: 1, ..Default::default() }.build().unwrap();
//! let (x0, y0) = problem.start();
//! let mut state = solver.init(&problem, x0, y0, 0).unwrap();
//! for _ in 0..100 {
//!     solver.step(&problem, &mut state).unwrap();
//! }
//! assert_eq!(state.t, 100);
//! ```
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use serde::{Deserialize, Serialize};

use crate::core::error::check_at_least;
use crate::core::linalg::{Scratch, rng_from_seed, serde_vector};
use crate::core::{
    Batch, Diagnostics, MinibatchSampler, Problem, Result, Rng, SamplingMode, Schedule, Solver,
    Vector, VectorExt,
};
use crate::hypergrad::{NeumannEstimator, PhiHat, PhiHatDraw, PhiHatSamplers, PhiHatWork};
use crate::linsolve::HiaParams;

/// Configuration of TTSA.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TtsaConfig {
    /// β_k: inner step size (the slow-decaying timescale).
    pub inner_lr: Schedule,
    /// α_k: outer step size.
    pub outer_lr: Schedule,
    /// N and η of the HIA estimator.
    pub hia: HiaParams,
    /// Size of every minibatch.
    pub batch_size: usize,
    /// How minibatches are drawn.
    pub sampling: SamplingMode,
}

impl Default for TtsaConfig {
    fn default() -> Self {
        Self {
            inner_lr: Schedule::inv_power(0.1, 0.4),
            outer_lr: Schedule::inv_power(0.1, 0.6),
            hia: HiaParams {
                max_terms: 10,
                step: 0.1,
            },
            batch_size: 64,
            sampling: SamplingMode::Shuffled,
        }
    }
}

impl TtsaConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        self.inner_lr.validate("inner_lr")?;
        self.outer_lr.validate("outer_lr")?;
        self.hia.validate("hia")?;
        check_at_least("batch_size", self.batch_size, 1)
    }

    /// The only constructor of [`Ttsa`].
    pub fn build(self) -> Result<Ttsa> {
        self.validate()?;
        let phi = PhiHat {
            neumann: NeumannEstimator::Hia(self.hia),
            batch_size: self.batch_size,
            sampling: self.sampling,
        };
        Ok(Ttsa { config: self, phi })
    }
}

/// TTSA (validated configuration).
#[derive(Clone, Debug)]
pub struct Ttsa {
    config: TtsaConfig,
    phi: PhiHat,
}

/// State of [`Ttsa`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TtsaState {
    /// Outer iterate.
    #[serde(with = "serde_vector")]
    pub x: Vector,
    /// Inner iterate.
    #[serde(with = "serde_vector")]
    pub y: Vector,
    /// Iteration counter.
    pub t: u64,
    /// Draws HIA's truncation P.
    pub rng: Rng,
    inner: MinibatchSampler,
    phi: PhiHatSamplers,
    #[serde(skip)]
    draw: PhiHatDraw,
    #[serde(skip)]
    work: PhiHatWork,
    #[serde(skip)]
    scratch: Scratch,
}

impl Solver for Ttsa {
    type State = TtsaState;

    fn name(&self) -> &'static str {
        "ttsa"
    }

    fn init(&self, problem: &Problem, x: Vector, y: Vector, seed: u64) -> Result<TtsaState> {
        use rand::Rng as _;
        let mut rng = rng_from_seed(seed, 0);
        let inner = MinibatchSampler::new(
            problem.g().n_samples(),
            self.config.batch_size,
            self.config.sampling,
            rng.next_u64(),
        )?;
        let phi = self.phi.samplers(problem, &mut rng)?;
        Ok(TtsaState {
            x,
            y,
            t: 0,
            rng,
            inner,
            phi,
            draw: PhiHatDraw::default(),
            work: PhiHatWork::default(),
            scratch: Scratch::default(),
        })
    }

    fn step(&self, problem: &Problem, s: &mut TtsaState) -> Result<Diagnostics> {
        let (dx, dy) = problem.dims();
        let [grad_y, h] = s.scratch.vectors([dy, dx]);
        let beta = self.config.inner_lr.at(s.t);
        let alpha = self.config.outer_lr.at(s.t);
        // Eq. (1): y_{k+1} = y_k − β_k ∇ᵧg(x_k, y_k; B_k).
        problem
            .g()
            .grad_y(&s.x, &s.y, Batch::Indices(s.inner.draw()), grad_y);
        s.y.axpy(-beta, grad_y);
        // Eq. (2): ĥ_k = Φ̂(x_k, y_{k+1}) with the HIA estimate of v.
        self.phi.draw(&mut s.phi, &mut s.rng, &mut s.draw);
        self.phi
            .evaluate(problem, &s.x, &s.y, &s.draw, h, &mut s.work);
        // Eq. (3): x_{k+1} = x_k − α_k ĥ_k.
        s.x.axpy(-alpha, h);
        s.t += 1;
        Ok(Diagnostics::new().with("hia_terms", s.draw.terms() as f64))
    }

    fn iterate<'s>(&self, s: &'s TtsaState) -> (&'s Vector, &'s Vector) {
        (&s.x, &s.y)
    }

    /// The HIA estimate v of the last step (none before the first step, also after a resume:
    /// it lives in the scratch), for `linsys_residual`.
    fn adjoint<'s>(&self, s: &'s TtsaState) -> Option<&'s Vector> {
        s.work.adjoint()
    }

    fn iteration(&self, s: &TtsaState) -> u64 {
        s.t
    }
}
