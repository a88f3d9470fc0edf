//! # BOME — bilevel optimization made easy (value-function, first order)
//!
//! B. Liu, M. Ye, S. Wright, P. Stone, Q. Liu. *BOME! Bilevel optimization made easy: a simple
//! first-order approach.* NeurIPS 2022 (arXiv:2209.08709) [recall: the arXiv entry may list
//! M. Ye first]. algorithms.md §8.5.
//!
//! ## Update (iteration k; algorithms.md §8.5)
//! The value-function reformulation min f(x, y) s.t. q(x, y) = g(x, y) − min_z g(x, z) ≤ 0,
//! solved by a dynamic barrier (a projected first-order step):
//! 1. $\hat y$ = T GD steps on g(x_k, ·) from y_k (fresh minibatches), held constant:
//!    $q(x, y) \approx g(x, y) - g(x, \hat y)$,
//!    $\nabla q = \big(\nabla_x g(x_k, y_k) - \nabla_x g(x_k, \hat y),\ \nabla_y g(x_k, y_k)\big)$.
//! 2. $\phi = \eta \Vert \nabla q\Vert ^2$ and
//!    $\lambda = \max\big(\phi - \langle \nabla f, \nabla q\rangle, 0\big) / \Vert \nabla q\Vert ^2$
//!    (λ = 0 when ∇q = 0), with $\nabla f = (\nabla_x f, \nabla_y f)(x_k, y_k)$.
//! 3. $(x, y)_{k+1} = (x, y)_k - \xi_k (\nabla f + \lambda \nabla q)$.
//!
//! λ is the smallest multiplier that makes q decrease at rate φ along the step. BOME does not
//! estimate ∇F: it converges to a neighbourhood of a stationary point whose size is controlled
//! by η, the step ξ and the accuracy of ŷ (on the quadratic: a decreasing step drives ‖∇F‖²
//! down; see the convergence table).
//!
//! ## Oracle calls per iteration (checked by `tests/it/oracle_counts.rs`)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | T + 1 | 1 | B_s (T steps), ξ / ζ |
//! | grad_x | 2 | 1 | ξ (at y and ŷ) / ζ |
//! | hvp_yy, cross | – | – | |
//!
//! ## Parameters
//! | field | paper | default | range |
//! |-------|-------|---------|-------|
//! | `inner_steps` | T | 10 | ≥ 1 |
//! | `inner_lr` | α (steps of ŷ) | 0.1 | > 0 (< 2/L_g) |
//! | `barrier` | η (φ = η‖∇q‖²) | 0.5 | > 0 |
//! | `outer_lr` | ξ_k (joint step of x and y) | `constant 0.1` | schedule |
//! | `batch_size` | — | 64 | ≥ 1 |
//! | `sampling` | — | `shuffled` | `shuffled`, `with_replacement`, `contiguous` |
//!
//! Defaults: η = 0.5 and T = 10 as in the reference benchmark; steps 0.1 (its default step).
//!
//! ## Example
//! ```
//! use bilevel::prelude::*;
//! let problem = bilevel::problems::quadratic::tiny();
//! let solver = BomeConfig { batch_size: 1, ..Default::default() }.build().unwrap();
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

use crate::core::error::{check_at_least, check_positive};
use crate::core::linalg::{Scratch, rng_from_seed, serde_vector};
use crate::core::{
    Batch, Diagnostics, MinibatchSampler, Problem, Result, SamplingMode, Schedule, Solver, Vector,
    VectorExt,
};
use crate::inner::descend;

/// Configuration of BOME.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BomeConfig {
    /// T: GD steps of ŷ per iteration.
    pub inner_steps: usize,
    /// α: step of the ŷ descent.
    pub inner_lr: f64,
    /// η: the barrier coefficient, φ = η‖∇q‖².
    pub barrier: f64,
    /// ξ_k: joint step of x and y.
    pub outer_lr: Schedule,
    /// Size of every minibatch.
    pub batch_size: usize,
    /// How minibatches are drawn.
    pub sampling: SamplingMode,
}

impl Default for BomeConfig {
    fn default() -> Self {
        Self {
            inner_steps: 10,
            inner_lr: 0.1,
            barrier: 0.5,
            outer_lr: Schedule::constant(0.1),
            batch_size: 64,
            sampling: SamplingMode::Shuffled,
        }
    }
}

impl BomeConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check_at_least("inner_steps", self.inner_steps, 1)?;
        check_positive("inner_lr", self.inner_lr)?;
        check_positive("barrier", self.barrier)?;
        self.outer_lr.validate("outer_lr")?;
        check_at_least("batch_size", self.batch_size, 1)
    }
    /// The only constructor of [`Bome`].
    pub fn build(self) -> Result<Bome> {
        self.validate()?;
        Ok(Bome { config: self })
    }
}

/// BOME (validated configuration).
#[derive(Clone, Debug)]
pub struct Bome {
    config: BomeConfig,
}

/// State of [`Bome`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BomeState {
    /// Outer iterate.
    #[serde(with = "serde_vector")]
    pub x: Vector,
    /// Inner iterate.
    #[serde(with = "serde_vector")]
    pub y: Vector,
    /// Iteration counter.
    pub t: u64,
    inner: MinibatchSampler,
    outer_g: MinibatchSampler,
    outer_f: MinibatchSampler,
    #[serde(skip)]
    batch: Vec<usize>,
    #[serde(skip)]
    scratch: Scratch,
}

impl Solver for Bome {
    type State = BomeState;

    fn name(&self) -> &'static str {
        "bome"
    }

    fn init(&self, problem: &Problem, x: Vector, y: Vector, seed: u64) -> Result<BomeState> {
        use rand::Rng as _;
        let (n_g, n_f) = (problem.g().n_samples(), problem.f().n_samples());
        let mut rng = rng_from_seed(seed, 0);
        let bs = self.config.batch_size;
        let mode = self.config.sampling;
        let mut make = |n| MinibatchSampler::new(n, bs, mode, rng.next_u64());
        let (inner, outer_g, outer_f) = (make(n_g)?, make(n_g)?, make(n_f)?);
        Ok(BomeState {
            x,
            y,
            t: 0,
            inner,
            outer_g,
            outer_f,
            batch: Vec::new(),
            scratch: Scratch::default(),
        })
    }

    fn step(&self, problem: &Problem, s: &mut BomeState) -> Result<Diagnostics> {
        let (f, g) = (problem.f(), problem.g());
        let (dx, dy) = problem.dims();
        let [y_hat, grad, f_x, f_y, q_x, q_y, tmp_x] =
            s.scratch.vectors([dy, dy, dx, dy, dx, dy, dx]);
        let c = &self.config;
        let xi_k = c.outer_lr.at(s.t);

        // Step 1: ŷ = T GD steps on g(x_k, ·) from y_k.
        y_hat.assign(&s.y);
        descend(
            g,
            &s.x,
            y_hat,
            c.inner_steps,
            c.inner_lr,
            Some(&mut s.inner),
            grad,
        );
        // ∇f = (∇ₓf, ∇ᵧf)(x_k, y_k) on ζ.
        f.grad_xy(&s.x, &s.y, Batch::Indices(s.outer_f.draw()), f_x, f_y);
        // Step 1: ∇q = (∇ₓg(x, y) − ∇ₓg(x, ŷ), ∇ᵧg(x, y)) on ξ.
        s.outer_g.draw_into(&mut s.batch);
        let xi = Batch::Indices(&s.batch);
        g.grad_xy(&s.x, &s.y, xi, q_x, q_y);
        g.grad_x(&s.x, y_hat, xi, tmp_x);
        q_x.axpy(-1.0, tmp_x);
        // Step 2: φ = η‖∇q‖², λ = max(φ − ⟨∇f, ∇q⟩, 0) / ‖∇q‖².
        let q_norm_sq = q_x.norm_sq() + q_y.norm_sq();
        let lambda = if q_norm_sq > 0.0 {
            let phi = c.barrier * q_norm_sq;
            ((phi - f_x.dot(q_x) - f_y.dot(q_y)).max(0.0)) / q_norm_sq
        } else {
            0.0
        };
        // Step 3: (x, y) ← (x, y) − ξ_k (∇f + λ ∇q).
        s.x.axpy(-xi_k, f_x);
        s.x.axpy(-xi_k * lambda, q_x);
        s.y.axpy(-xi_k, f_y);
        s.y.axpy(-xi_k * lambda, q_y);
        s.t += 1;
        Ok(Diagnostics::new().with("multiplier", lambda))
    }

    fn iterate<'s>(&self, s: &'s BomeState) -> (&'s Vector, &'s Vector) {
        (&s.x, &s.y)
    }

    fn iteration(&self, s: &BomeState) -> u64 {
        s.t
    }
}
