//! The evolution-strategies Jacobian estimator of ESJ / PZOBO (algorithms.md §4.3–4.4).
//!
//! ∇F = ∇ₓf + (dy/dx)ᵀ ∇ᵧf, with the response Jacobian dy_T/dx of the T-step inner descent
//! replaced by a one-sided Gaussian-smoothing (ES) estimate built from *first-order* oracles only:
//!
//! $$ y_T = \mathrm{GD}_T(x;\thinspace y_0), \qquad
//!    \delta_j = \frac{\mathrm{GD}_T(x + \mu u_j;\thinspace y_0) - y_T}{\mu}, \qquad
//!    \hat h = \nabla_x f(x, y_T) + \frac{c}{Q} \sum_{j=1}^{Q} \langle \delta_j, \nabla_y f(x, y_T)
//!    \rangle\thinspace u_j, $$
//!
//! i.e. ĥ = ∇ₓf + Ĵᵀ∇ᵧf with Ĵ = (c/Q) Σⱼ δⱼ uⱼᵀ. Ĵ is never formed: only the Q scalars
//! ⟨δⱼ, ∇ᵧf⟩ are. Every trajectory starts from the SAME y₀ (the warm start), and in the
//! stochastic mode (ESJ-S) every trajectory uses the SAME batch at inner step t (common random
//! numbers, §4.4): the T inner batches are drawn once per estimate and replayed Q + 1 times, so
//! δⱼ carries no sampling noise of order 1/μ.
//!
//! Directions ([`Direction`]): `Gaussian` (paper, benchopt; c = 1, E\[uuᵀ\] = I) or `UnitSphere`
//! (the official PyTorch code normalises u; E\[uuᵀ\] = I/p, so c = 1 shrinks the ES term by 1/p, as
//! in the shipped scripts, and `rescale = true` sets c = p to undo it). x is one flat vector here,
//! so "per tensor" normalisation is normalisation of the whole of u.
//!
//! When y_T(x) is affine in x (g quadratic with ∇²ᵧᵧg independent of x, GD inner loop) δⱼ = J uⱼ
//! exactly, so E\[Ĵ\] = J = dy_T/dx for every μ (Gaussian or rescaled unit-sphere directions).
//!
//! Oracle calls of one estimate: g: grad_y (Q + 1)·T; f: grad_x 1, grad_y 1 (one fused call).
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use serde::{Deserialize, Serialize};

use super::Hypergradient;
use crate::core::error::{Error, Result, check_at_least, check_positive};
use crate::core::linalg::{Scratch, serde_vector, standard_normal};
use crate::core::{
    Batch, Diagnostics, MinibatchSampler, Objective, Problem, Rng, SamplingMode, Vector, VectorExt,
};
use crate::inner::descend_on;

/// The law of the ES directions uⱼ (algorithms.md §4.3, "direction distribution").
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Direction {
    /// u ~ N(0, I_p), unnormalised (paper, theory, benchopt): E\[uuᵀ\] = I.
    #[default]
    Gaussian,
    /// u uniform on the unit sphere (official code): E\[uuᵀ\] = I/p.
    UnitSphere {
        /// Multiply the ES term by p (the `hgvesj` factor) so that it targets the Jacobian
        /// itself; `false` (the shipped scripts) leaves it shrunk by 1/p.
        #[serde(default)]
        rescale: bool,
    },
}

impl Direction {
    /// Draws u into `u` from `rng`.
    pub fn draw(&self, rng: &mut Rng, u: &mut Vector) {
        loop {
            for ui in u.as_mut_slice() {
                *ui = standard_normal(rng);
            }
            match self {
                Direction::Gaussian => return,
                Direction::UnitSphere { .. } => {
                    let norm = u.norm();
                    // A zero Gaussian vector has probability 0; redraw rather than divide by 0.
                    if norm > 0.0 {
                        u.scale(1.0 / norm);
                        return;
                    }
                }
            }
        }
    }

    /// The factor c of the ES term for dimension `p`.
    pub fn scale(&self, p: usize) -> f64 {
        match self {
            Direction::UnitSphere { rescale: true } => p as f64,
            _ => 1.0,
        }
    }
}

/// The ES-Jacobian estimator.
#[derive(Clone, Debug, PartialEq)]
pub struct EsJacobian {
    /// T: inner GD steps per trajectory.
    pub inner_steps: usize,
    /// α: inner step size.
    pub inner_lr: f64,
    /// Q: number of directions.
    pub directions: usize,
    /// μ: smoothing radius (finite-difference step).
    pub smoothing: f64,
    /// The law of the directions.
    pub direction: Direction,
    /// Start every estimate from the previous unperturbed y_T (true) or from the initial y₀.
    pub warm_start: bool,
    /// Minibatch size (ESJ-S), or `None` for full-batch oracles (ESJ).
    pub batch_size: Option<usize>,
    /// How minibatches are drawn.
    pub sampling: SamplingMode,
}

impl EsJacobian {
    /// Checks the parameters (field names as in the algorithm configs).
    pub fn validate(&self) -> Result<()> {
        check_at_least("inner_steps", self.inner_steps, 1)?;
        check_positive("inner_lr", self.inner_lr)?;
        check_at_least("directions", self.directions, 1)?;
        check_positive("smoothing", self.smoothing)?;
        if self.batch_size == Some(0) {
            return Err(Error::config("batch_size", "must be >= 1"));
        }
        Ok(())
    }

    /// Writes the ES term Ĵᵀw = (c/Q) Σⱼ ⟨δⱼ, w⟩ uⱼ into `out`, for the trajectory
    /// `y_t` = GD_T(x; y0) already computed on the inner batches `inner_batches` (the T batches
    /// concatenated, each of the estimator's batch size; `None` for full batches). Draws the Q
    /// directions from `rng`. Allocates its scratch; [`Hypergradient::estimate`] uses the
    /// allocation-free path. Oracle calls: Q·T grad_y on g.
    ///
    /// Public so that tests can recover Ĵ column by column (w = eᵢ with the same `rng` state).
    pub fn jacobian_transpose_product(
        &self,
        g: &dyn Objective,
        x: &Vector,
        y0: &Vector,
        y_t: &Vector,
        w: &Vector,
        inner_batches: Option<&[usize]>,
        rng: &mut Rng,
        out: &mut Vector,
    ) {
        let (dx, dy) = (x.nrows(), y0.nrows());
        let (mut u, mut x_pert) = (Vector::zeros(dx), Vector::zeros(dx));
        let (mut y_pert, mut grad) = (Vector::zeros(dy), Vector::zeros(dy));
        out.set_zero();
        let bs = self.batch_size.unwrap_or(0);
        let batch_at = |t: usize| match inner_batches {
            Some(b) => Batch::Indices(&b[t * bs..(t + 1) * bs]),
            None => Batch::Full,
        };
        let scratch = (&mut u, &mut x_pert, &mut y_pert, &mut grad);
        self.accumulate_es_term(g, x, y0, y_t, w, batch_at, rng, out, scratch);
    }

    /// out ← out + (c/Q) Σⱼ ⟨δⱼ, w⟩ uⱼ (the loop of §4.3), with scratch
    /// `(u, x + μu, y^j, grad)`.
    fn accumulate_es_term<'b>(
        &self,
        g: &dyn Objective,
        x: &Vector,
        y0: &Vector,
        y_t: &Vector,
        w: &Vector,
        batch_at: impl Fn(usize) -> Batch<'b> + Copy,
        rng: &mut Rng,
        out: &mut Vector,
        scratch: (&mut Vector, &mut Vector, &mut Vector, &mut Vector),
    ) {
        let (u, x_pert, y_pert, grad) = scratch;
        let (mu, q) = (self.smoothing, self.directions);
        let weight = self.direction.scale(x.nrows()) / q as f64;
        // ⟨y_T, w⟩ once: ⟨δⱼ, w⟩ = (⟨yⱼ, w⟩ − ⟨y_T, w⟩)/μ.
        let base = y_t.dot(w);
        for _ in 0..q {
            // §4.3: draw uⱼ (Gaussian or unit sphere).
            self.direction.draw(rng, u);
            // §4.3: y_T^j = GD_T(x + μuⱼ; start y₀) — SAME y₀, SAME batches (§4.4, CRN).
            x_pert.assign(x);
            x_pert.axpy(mu, u);
            y_pert.assign(y0);
            descend_on(
                g,
                x_pert,
                y_pert,
                self.inner_steps,
                self.inner_lr,
                batch_at,
                None,
                grad,
            );
            // §4.3: ⟨δⱼ, ∇ᵧf⟩ with δⱼ = (y_T^j − y_T)/μ; ĥ += (c/Q)⟨δⱼ, ∇ᵧf⟩ uⱼ.
            let s = (y_pert.dot(w) - base) / mu;
            out.axpy(weight * s, u);
        }
    }
}

/// Samplers of the stochastic mode: inner steps on g, outer gradients on f.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct EsSamplers {
    inner: MinibatchSampler,
    outer: MinibatchSampler,
}

/// Scratch (not serialized; rebuilt on first use).
#[derive(Clone, Debug, Default)]
struct EsWork {
    x_vectors: Scratch,
    y_vectors: Scratch,
    /// The T inner batches of this estimate, concatenated (replayed on every trajectory).
    inner_batches: Vec<usize>,
    outer_batch: Vec<usize>,
}

/// State of [`EsJacobian`]: the warm start, the initial y₀ and the samplers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EsJacobianState {
    /// The last unperturbed inner output y_T (the warm start of the next estimate).
    #[serde(with = "serde_vector")]
    pub y: Vector,
    /// The initial y₀ (the start of every estimate when `warm_start` is off).
    #[serde(with = "serde_vector")]
    pub y_init: Vector,
    samplers: Option<EsSamplers>,
    #[serde(skip)]
    work: EsWork,
}

impl Hypergradient for EsJacobian {
    type State = EsJacobianState;

    fn init(&self, problem: &Problem, y0: Vector, rng: &mut Rng) -> Result<EsJacobianState> {
        use rand::Rng as _;
        let samplers = match self.batch_size {
            None => None,
            Some(bs) => {
                let (n_g, n_f) = (problem.g().n_samples(), problem.f().n_samples());
                let mut make = |n| MinibatchSampler::new(n, bs, self.sampling, rng.next_u64());
                Some(EsSamplers {
                    inner: make(n_g)?,
                    outer: make(n_f)?,
                })
            }
        };
        Ok(EsJacobianState {
            y_init: y0.clone(),
            y: y0,
            samplers,
            work: EsWork::default(),
        })
    }

    fn estimate(
        &self,
        problem: &Problem,
        x: &Vector,
        st: &mut EsJacobianState,
        rng: &mut Rng,
        out: &mut Vector,
    ) -> Result<Diagnostics> {
        let (f, g) = (problem.f(), problem.g());
        let (dx, dy) = problem.dims();
        let w = &mut st.work;
        let [u, x_pert, grad_x] = w.x_vectors.vectors([dx, dx, dx]);
        let [y0, y_pert, grad, grad_y] = w.y_vectors.vectors([dy, dy, dy, dy]);

        // §4.3: y₀ = y_warm (the previous unperturbed output), or the fixed initial point.
        y0.assign(if self.warm_start { &st.y } else { &st.y_init });

        // §4.4: draw the T inner batches once; every trajectory replays them (CRN). The outer
        // batch is independent.
        let bs = match st.samplers.as_mut() {
            Some(s) => {
                w.inner_batches.clear();
                for _ in 0..self.inner_steps {
                    w.inner_batches.extend_from_slice(s.inner.draw());
                }
                s.outer.draw_into(&mut w.outer_batch);
                s.inner.batch_size()
            }
            None => 0,
        };
        let stochastic = st.samplers.is_some();
        let inner_batches = &w.inner_batches;
        let batch_at = |t: usize| {
            if stochastic {
                Batch::Indices(&inner_batches[t * bs..(t + 1) * bs])
            } else {
                Batch::Full
            }
        };

        // §4.3: y_T = GD_T(x; y₀); it becomes the next warm start (y_warm ← y_T).
        st.y.assign(y0);
        descend_on(
            g,
            x,
            &mut st.y,
            self.inner_steps,
            self.inner_lr,
            batch_at,
            None,
            grad,
        );

        // §4.3: one outer gradient evaluation at (x, y_T): ∇ₓf and ∇ᵧf.
        let outer = if stochastic {
            Batch::Indices(&w.outer_batch)
        } else {
            Batch::Full
        };
        f.grad_xy(x, &st.y, outer, grad_x, grad_y);

        // §4.3: ĥ = ∇ₓf + (c/Q) Σⱼ ⟨δⱼ, ∇ᵧf⟩ uⱼ.
        out.assign(grad_x);
        let scratch = (u, x_pert, y_pert, grad);
        self.accumulate_es_term(g, x, y0, &st.y, grad_y, batch_at, rng, out, scratch);
        Ok(Diagnostics::new())
    }

    fn inner_iterate<'s>(&self, st: &'s EsJacobianState) -> &'s Vector {
        &st.y
    }
}
