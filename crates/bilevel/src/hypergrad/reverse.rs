//! Iterative differentiation (ITD) in reverse mode: differentiate x ↦ f(x, y_T(x)) through T
//! unrolled inner steps y_{t+1} = Ψ(x, y_t) = y_t − α ∇ᵧg(x, y_t; B_t), with stored iterates
//! (algorithms.md §8.3; Franceschi et al. 2017, truncated: Shaban et al. 2019).
//!
//! The reverse sweep over the last K steps (K = T: full back-propagation):
//!
//! $$ a_T = \nabla_y f(x, y_T), \qquad
//!    a_t = \Big(\tfrac{\partial\Psi}{\partial y}(x, y_t)\Big)^{\negthinspace \top} a_{t+1}
//!        = a_{t+1} - \alpha\thinspace \nabla^2_{yy} g(x, y_t; B_t)\thinspace a_{t+1}, $$
//! $$ \hat h = \nabla_x f(x, y_T) + \sum_{t=T-K}^{T-1}
//!    \Big(\tfrac{\partial\Psi}{\partial x}(x, y_t)\Big)^{\negthinspace \top} a_{t+1}
//!    = \nabla_x f(x, y_T) - \alpha \sum_{t=T-K}^{T-1} \nabla^2_{xy} g(x, y_t; B_t)\thinspace a_{t+1}. $$
//!
//! Each backward step replays the minibatch B_t of its forward step. The start y₀ is a constant
//! (a warm start from the previous outer iteration, or the fixed initial point): the estimate is
//! the exact gradient of x ↦ f(x, y_T(x)) for K = T. For K < T it drops the contribution of the
//! first T − K steps: a bias that shrinks geometrically in K on strongly convex inner problems.
//!
//! Oracle calls of one estimate: grad_y T (forward), hvp_yy K and cross_xy K on g (backward);
//! grad_x 1 and grad_y 1 (fused) on f. Memory: T + 1 stored iterates.
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use serde::{Deserialize, Serialize};

use super::Hypergradient;
use crate::core::error::{Error, Result, check_at_least, check_positive};
use crate::core::linalg::{Scratch, serde_vector};
use crate::core::{
    Batch, Diagnostics, MinibatchSampler, Objective, Problem, Rng, SamplingMode, Vector, VectorExt,
};
use crate::inner::descend_recording;

/// Scratch of [`reverse_sweep`]: one y-space and one x-space buffer.
#[derive(Clone, Debug, Default)]
pub struct ReverseWork {
    vectors: Scratch,
}

/// The reverse sweep of ITD over the last `backprop_steps` = K of the T steps recorded in
/// `trajectory` = [y₀, …, y_T] (step t maps y_t to y_{t+1} with step `lr` on minibatch
/// `batch_of(t)`).
///
/// On entry `adjoint` holds a_T (usually ∇ᵧf(x, y_T)); on return it holds a_{T−K}, and `acc`
/// (length dim x, overwritten) holds Σ_{t=T−K}^{T−1} (∂Ψ/∂x)ᵀ a_{t+1} = −α Σ ∇²ₓᵧg(x, y_t) a_{t+1}.
/// Oracle calls: K × hvp_yy and K × cross_xy on `g`. (The last hvp only serves the returned
/// a_{T−K}; it is kept so that the sweep composes, e.g. with a caller that continues through
/// earlier steps or into the start y₀.)
pub fn reverse_sweep<'b>(
    g: &dyn Objective,
    x: &Vector,
    trajectory: &[Vector],
    lr: f64,
    batch_of: impl Fn(usize) -> Batch<'b>,
    backprop_steps: usize,
    adjoint: &mut Vector,
    acc: &mut Vector,
    work: &mut ReverseWork,
) {
    let steps = trajectory.len().saturating_sub(1);
    assert!(
        backprop_steps <= steps,
        "reverse_sweep: K = {backprop_steps} exceeds the T = {steps} recorded steps"
    );
    let [hvp, cross] = work.vectors.vectors([adjoint.nrows(), acc.nrows()]);
    acc.set_zero();
    for t in (steps - backprop_steps..steps).rev() {
        let (y_t, batch) = (&trajectory[t], batch_of(t));
        // acc += (∂Ψ/∂x)ᵀ a_{t+1} = −α ∇²ₓᵧg(x, y_t; B_t) a_{t+1}
        g.cross_xy(x, y_t, adjoint, batch, cross);
        acc.axpy(-lr, cross);
        // a_t = (∂Ψ/∂y)ᵀ a_{t+1} = a_{t+1} − α ∇²ᵧᵧg(x, y_t; B_t) a_{t+1}
        g.hvp_yy(x, y_t, adjoint, batch, hvp);
        adjoint.axpy(-lr, hvp);
    }
}

/// The ITD estimator: T recorded inner (S)GD steps, then the reverse sweep over the last K.
#[derive(Clone, Debug, PartialEq)]
pub struct Reverse {
    /// T, the unrolled inner steps per estimate.
    pub inner_steps: usize,
    /// α, the inner step (the map Ψ).
    pub inner_lr: f64,
    /// K ≤ T, the back-propagated steps; `None` = T (full back-propagation).
    pub backprop_steps: Option<usize>,
    /// Start the unroll from the previous y_T (`true`) or from the initial y₀ every time.
    pub warm_start: bool,
    /// Minibatch size, or `None` for full-batch (deterministic) oracles.
    pub batch_size: Option<usize>,
    /// How minibatches are drawn.
    pub sampling: SamplingMode,
}

impl Reverse {
    /// Checks the parameters (field names as in the algorithm configs).
    pub fn validate(&self) -> Result<()> {
        check_positive("inner_lr", self.inner_lr)?;
        check_at_least("inner_steps", self.inner_steps, 1)?;
        if let Some(k) = self.backprop_steps {
            check_at_least("backprop_steps", k, 1)?;
            if k > self.inner_steps {
                return Err(Error::config(
                    "backprop_steps",
                    format!("must be <= inner_steps ({}), got {k}", self.inner_steps),
                ));
            }
        }
        if self.batch_size == Some(0) {
            return Err(Error::config("batch_size", "must be >= 1"));
        }
        Ok(())
    }
    fn backprop(&self) -> usize {
        self.backprop_steps.unwrap_or(self.inner_steps)
    }
}

/// Samplers of the stochastic mode: inner steps on g, outer gradients on f.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ReverseSamplers {
    inner: MinibatchSampler,
    outer: MinibatchSampler,
}

/// Transient buffers of one estimate (not serialized).
#[derive(Clone, Debug, Default)]
struct Work {
    vectors: Scratch,
    trajectory: Vec<Vector>,
    /// The T forward minibatches, concatenated (stochastic mode).
    batches: Vec<usize>,
    outer_batch: Vec<usize>,
    sweep: ReverseWork,
}

/// State of [`Reverse`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReverseState {
    /// y_T of the last estimate (the warm start when `warm_start`).
    #[serde(with = "serde_vector")]
    pub y: Vector,
    /// The initial y₀ (the start of every unroll without warm start).
    #[serde(with = "serde_vector")]
    pub start: Vector,
    samplers: Option<ReverseSamplers>,
    #[serde(skip)]
    work: Work,
}

impl Hypergradient for Reverse {
    type State = ReverseState;

    fn init(&self, problem: &Problem, y0: Vector, rng: &mut Rng) -> Result<ReverseState> {
        use rand::Rng as _;
        let samplers = match self.batch_size {
            None => None,
            Some(bs) => {
                let (n_g, n_f) = (problem.g().n_samples(), problem.f().n_samples());
                let mut make = |n| MinibatchSampler::new(n, bs, self.sampling, rng.next_u64());
                Some(ReverseSamplers {
                    inner: make(n_g)?,
                    outer: make(n_f)?,
                })
            }
        };
        Ok(ReverseState {
            start: y0.clone(),
            y: y0,
            samplers,
            work: Work::default(),
        })
    }

    fn estimate(
        &self,
        problem: &Problem,
        x: &Vector,
        st: &mut ReverseState,
        _rng: &mut Rng,
        out: &mut Vector,
    ) -> Result<Diagnostics> {
        let (f, g) = (problem.f(), problem.g());
        let (dx, dy) = problem.dims();
        let (t_steps, k_steps) = (self.inner_steps, self.backprop());
        let w = &mut st.work;
        let [grad_y, adjoint, acc] = w.vectors.vectors([dy, dy, dx]);

        // Forward: y₀ (warm start or the fixed start), T recorded steps y_{t+1} = Ψ(x, y_t).
        if !self.warm_start {
            st.y.assign(&st.start);
        }
        let bs = match st.samplers.as_mut() {
            Some(s) => {
                // Replay the inner sampler to record the forward minibatches B_0..B_{T−1}.
                let mut replay = s.inner.clone();
                descend_recording(
                    g,
                    x,
                    &mut st.y,
                    t_steps,
                    self.inner_lr,
                    Some(&mut s.inner),
                    grad_y,
                    &mut w.trajectory,
                );
                w.batches.clear();
                for _ in 0..t_steps {
                    w.batches.extend_from_slice(replay.draw());
                }
                replay.batch_size()
            }
            None => {
                descend_recording(
                    g,
                    x,
                    &mut st.y,
                    t_steps,
                    self.inner_lr,
                    None,
                    grad_y,
                    &mut w.trajectory,
                );
                0
            }
        };

        // a_T = ∇ᵧf(x, y_T), and ∇ₓf(x, y_T) into out, on one outer batch.
        match st.samplers.as_mut() {
            Some(s) => {
                s.outer.draw_into(&mut w.outer_batch);
                f.grad_xy(x, &st.y, Batch::Indices(&w.outer_batch), out, adjoint);
            }
            None => f.grad_xy(x, &st.y, Batch::Full, out, adjoint),
        }

        // Backward over the last K steps; ĥ = ∇ₓf + Σ (∂Ψ/∂x)ᵀ a_{t+1}.
        let batches = &w.batches;
        let full = st.samplers.is_none();
        reverse_sweep(
            g,
            x,
            &w.trajectory,
            self.inner_lr,
            |t| {
                if full {
                    Batch::Full
                } else {
                    Batch::Indices(&batches[t * bs..(t + 1) * bs])
                }
            },
            k_steps,
            adjoint,
            acc,
            &mut w.sweep,
        );
        out.axpy(1.0, acc);
        Ok(Diagnostics::new().with("backprop_steps", k_steps as f64))
    }

    fn inner_iterate<'s>(&self, st: &'s ReverseState) -> &'s Vector {
        &st.y
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::linalg::rng_from_seed;

    #[test]
    fn stochastic_reverse_replays_the_forward_batches() {
        // On the tiny problem (3 samples in g, 2 in f) a minibatch of 3 is the whole set (in a
        // shuffled order): if the reverse sweep replays each forward batch, the stochastic and
        // the deterministic estimators agree up to summation order.
        let problem = crate::problems::quadratic::tiny();
        let (x, y0) = problem.start();
        let make = |batch_size| Reverse {
            inner_steps: 6,
            inner_lr: 0.3,
            backprop_steps: Some(4),
            warm_start: true,
            batch_size,
            sampling: SamplingMode::Shuffled,
        };
        let mut outs = Vec::new();
        for est in [make(None), make(Some(3))] {
            let mut rng = rng_from_seed(1, 0);
            let mut st = est.init(&problem, y0.clone(), &mut rng).unwrap();
            let mut out = Vector::zeros(x.nrows());
            est.estimate(&problem, &x, &mut st, &mut rng, &mut out)
                .unwrap();
            outs.push(out);
        }
        let diff = (&outs[0] - &outs[1]).norm();
        assert!(diff <= 1e-12 * outs[0].norm(), "difference {diff:e}");
    }
}
