//! # MSTSA — momentum-assisted single-timescale stochastic approximation
//!
//! P. Khanduri, S. Zeng, M. Hong, H.-T. Wai, Z. Wang, Z. Yang. *A momentum-assisted
//! single-timescale stochastic approximation algorithm for bilevel optimization.*
//! arXiv:2102.07367 v1, 2021 (the later versions of this arXiv entry are SUSTAIN) \[recall\].
//! algorithms.md §8.4, as in the MRBO/VRBO authors' baseline code.
//!
//! ## Update (iteration k)
//! $$ y_{k+1} = y_k - \beta_k \nabla_y g(x_k, y_k; B_k), $$
//! $$ h_k = c\thinspace \hat\Phi(x_k, y_{k+1}; \mathcal B) + (1 - c)\big(h_{k-1} + \hat\Phi(x_k, y_{k+1}; \mathcal B)
//!        - \hat\Phi(x_{k-1}, y_k; \mathcal B)\big)
//!      = \hat\Phi(x_k, y_{k+1}; \mathcal B) + (1 - c)\big(h_{k-1} - \hat\Phi(x_{k-1}, y_k; \mathcal B)\big), $$
//! $$ x_{k+1} = x_k - \alpha_k h_k, $$
//! with h₀ = Φ̂(x₀, y₁). The two Φ̂ share every batch (one `hypergrad::PhiHatDraw`): the "old"
//! point (x_{k−1}, y_k) is the previous iteration's "new" point, the STORM pairing. The
//! momentum only acts on the outer direction (single timescale: α_k and β_k decay alike).
//!
//! ## Oracle calls per iteration (checked by `tests/it/oracle_counts.rs`)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | 1 | 2 | B_k / B_F (twice) |
//! | grad_x | – | 2 | B_F |
//! | hvp_yy | 2Q (SHIA; HIA: 2P) | – | B_1..B_Q (shared) |
//! | cross_xy | 2 | – | B_G |
//!
//! The first iteration evaluates Φ̂ once (no old point).
//!
//! ## Parameters
//! | field | paper | default | range |
//! |-------|-------|---------|-------|
//! | `inner_lr` | β_k | `inv_power { c = 0.1, a = 0.5 }` | schedule |
//! | `outer_lr` | α_k | `inv_power { c = 0.1, a = 0.5 }` | schedule |
//! | `momentum` | c | 0.5 | (0, 1] |
//! | `neumann` | Φ̂'s series | `{ kind = "shia", terms = 3, step = 0.5 }` | `shia` or `hia` |
//! | `batch_size` | — | 64 | ≥ 1 |
//! | `sampling` | — | `shuffled` | `shuffled`, `with_replacement`, `contiguous` |
//!
//! Defaults: the MRBO/VRBO authors' baseline code (c = 0.5, steps 0.1/√(k+1), Q = 3, η = 0.5).
//!
//! ## Example
//! ```
//! use bilevel::prelude::*;
//! let problem = bilevel::problems::quadratic::tiny();
//! let solver = MstsaConfig { batch_size: 1, ..Default::default() }.build().unwrap();
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

use crate::core::error::{check_at_least, check_in_range};
use crate::core::linalg::{Scratch, rng_from_seed, serde_vector};
use crate::core::{
    Batch, Diagnostics, MinibatchSampler, Problem, Result, Rng, SamplingMode, Schedule, Solver,
    Vector, VectorExt,
};
use crate::hypergrad::{NeumannEstimator, PhiHat, PhiHatDraw, PhiHatSamplers, PhiHatWork};
use crate::linsolve::NeumannParams;

/// Configuration of MSTSA.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MstsaConfig {
    /// β_k: step of y.
    pub inner_lr: Schedule,
    /// α_k: step of x.
    pub outer_lr: Schedule,
    /// c: momentum weight of the outer direction (1: no momentum).
    pub momentum: f64,
    /// The Neumann estimator inside Φ̂.
    pub neumann: NeumannEstimator,
    /// Size of every minibatch.
    pub batch_size: usize,
    /// How minibatches are drawn.
    pub sampling: SamplingMode,
}

impl Default for MstsaConfig {
    fn default() -> Self {
        Self {
            inner_lr: Schedule::inv_power(0.1, 0.5),
            outer_lr: Schedule::inv_power(0.1, 0.5),
            momentum: 0.5,
            neumann: NeumannEstimator::Shia(NeumannParams {
                terms: 3,
                step: 0.5,
            }),
            batch_size: 64,
            sampling: SamplingMode::Shuffled,
        }
    }
}

impl MstsaConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        self.inner_lr.validate("inner_lr")?;
        self.outer_lr.validate("outer_lr")?;
        check_in_range("momentum", self.momentum, f64::MIN_POSITIVE, 1.0)?;
        self.neumann.validate("neumann")?;
        check_at_least("batch_size", self.batch_size, 1)
    }

    /// The only constructor of [`Mstsa`].
    pub fn build(self) -> Result<Mstsa> {
        self.validate()?;
        let phi = PhiHat {
            neumann: self.neumann,
            batch_size: self.batch_size,
            sampling: self.sampling,
        };
        Ok(Mstsa { config: self, phi })
    }
}

/// MSTSA (validated configuration).
#[derive(Clone, Debug)]
pub struct Mstsa {
    config: MstsaConfig,
    phi: PhiHat,
}

/// State of [`Mstsa`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MstsaState {
    /// Outer iterate x_k.
    #[serde(with = "serde_vector")]
    pub x: Vector,
    /// Inner iterate y_k.
    #[serde(with = "serde_vector")]
    pub y: Vector,
    /// x_{k−1}, the outer half of the previous "new" point.
    #[serde(with = "serde_vector")]
    pub x_prev: Vector,
    /// Outer direction h_{k−1}.
    #[serde(with = "serde_vector")]
    pub h: Vector,
    /// Iteration counter.
    pub t: u64,
    /// Draws HIA's truncation when `neumann` is HIA.
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

impl Solver for Mstsa {
    type State = MstsaState;

    fn name(&self) -> &'static str {
        "mstsa"
    }

    fn init(&self, problem: &Problem, x: Vector, y: Vector, seed: u64) -> Result<MstsaState> {
        use rand::Rng as _;
        let mut rng = rng_from_seed(seed, 0);
        let inner = MinibatchSampler::new(
            problem.g().n_samples(),
            self.config.batch_size,
            self.config.sampling,
            rng.next_u64(),
        )?;
        let phi = self.phi.samplers(problem, &mut rng)?;
        Ok(MstsaState {
            x_prev: x.clone(),
            h: Vector::zeros(x.nrows()),
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

    fn step(&self, problem: &Problem, s: &mut MstsaState) -> Result<Diagnostics> {
        let (dx, dy) = problem.dims();
        let [y_old, grad_y, h_new, h_old] = s.scratch.vectors([dy, dy, dx, dx]);
        let beta = self.config.inner_lr.at(s.t);
        let alpha = self.config.outer_lr.at(s.t);
        let c = self.config.momentum;

        // y_{k+1} = y_k − β_k ∇ᵧg(x_k, y_k; B_k).
        y_old.assign(&s.y);
        problem
            .g()
            .grad_y(&s.x, &s.y, Batch::Indices(s.inner.draw()), grad_y);
        s.y.axpy(-beta, grad_y);

        // h_k = Φ̂(x_k, y_{k+1}) + (1 − c)(h_{k−1} − Φ̂(x_{k−1}, y_k)), shared batches.
        self.phi.draw(&mut s.phi, &mut s.rng, &mut s.draw);
        self.phi
            .evaluate(problem, &s.x, &s.y, &s.draw, h_new, &mut s.work);
        if s.t == 0 {
            s.h.assign(h_new);
        } else {
            self.phi
                .evaluate(problem, &s.x_prev, y_old, &s.draw, h_old, &mut s.work);
            s.h.axpy(-1.0, h_old);
            s.h.scale_add(1.0 - c, h_new);
        }

        // x_{k+1} = x_k − α_k h_k.
        s.x_prev.assign(&s.x);
        s.x.axpy(-alpha, &s.h);
        s.t += 1;
        Ok(Diagnostics::new().with("neumann_terms", s.draw.terms() as f64))
    }

    fn iterate<'s>(&self, s: &'s MstsaState) -> (&'s Vector, &'s Vector) {
        (&s.x, &s.y)
    }

    fn iteration(&self, s: &MstsaState) -> u64 {
        s.t
    }
}
