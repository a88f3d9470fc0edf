//! Differentiation through an unrolled inner loop that starts at the outer variable: the
//! approximate ("MAML-type") bilevel setting of algorithms.md §7.1, shared by MAML, ANIL,
//! FO-MAML, Reptile and UFO-BLO.
//!
//! On an unrolled problem ([`UnrolledSpec`]) task j adapts the meta-parameters φ = x by r steps
//! of SGD on its support loss l_j = g(·; task j), optionally only on the head coordinates
//! (P = the projection on them; P = I otherwise):
//!
//! $$ \theta_0 = \phi, \qquad \theta_{k+1} = \theta_k - \alpha P \nabla l_j(\theta_k), \quad
//!    k = 0, \dots, r-1, $$
//!
//! and the meta-objective is M(φ) = mean_j L_j(θ_r), L_j = f(·; task j) the query loss. Its
//! exact gradient is the product formula (chain rule through the unrolled loop):
//!
//! $$ \nabla M_j(\phi) = (I - \alpha H_0 P)(I - \alpha H_1 P) \cdots (I - \alpha H_{r-1} P)\thinspace
//!    \nabla L_j(\theta_r), \qquad H_k = \nabla^2 l_j(\theta_k), $$
//!
//! evaluated right to left by the reverse sweep [`reverse_sweep`] from the iterates stored by
//! [`adapt_recording`] (one HVP per step, O(r) memory). This module is the ONE implementation of
//! that sweep: MAML and ANIL call it on every task, UFO-BLO on its exact branch.
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use serde::{Deserialize, Serialize};

use crate::core::error::{Error, Result};
use crate::core::linalg::{Scratch, serde_vector};
use crate::core::{
    Batch, MinibatchSampler, Objective, Problem, Rng, SamplingMode, UnrolledSpec, Vector, VectorExt,
};
use crate::inner::{descend_on, descend_recording_on};

/// The problem's unrolled spec, after checking the contract of an unrolled problem (dim x =
/// dim y, as many query tasks as support tasks, head range inside the parameters, and a head
/// range present when `needs_head`). `solver` names the caller in the error.
pub fn unrolled_spec(problem: &Problem, solver: &str, needs_head: bool) -> Result<UnrolledSpec> {
    let spec = problem.unrolled().ok_or_else(|| {
        Error::Unsupported(format!(
            "`{solver}` needs an unrolled (meta-learning) problem, one built with \
             Problem::with_unrolled (e.g. `ufo_toy`, `meta_linear`); `{}` is not",
            problem.name()
        ))
    })?;
    let (dx, dy) = problem.dims();
    if dx != dy {
        return Err(Error::DimensionMismatch {
            what: format!("`{solver}`: dim x (meta-parameters) and dim y (adapted parameters)"),
            expected: dx,
            found: dy,
        });
    }
    let (n_g, n_f) = (problem.g().n_samples(), problem.f().n_samples());
    if n_g != n_f {
        return Err(Error::DimensionMismatch {
            what: format!("`{solver}`: tasks of f (query) and of g (support)"),
            expected: n_g,
            found: n_f,
        });
    }
    if !(spec.lr.is_finite() && spec.lr > 0.0) {
        return Err(Error::config(
            "problem.unrolled.lr",
            format!("must be finite and > 0, got {}", spec.lr),
        ));
    }
    match spec.head {
        Some(h) if h.is_empty() || h.end > dy => {
            return Err(Error::config(
                "problem.unrolled.head",
                format!("must be a non-empty range inside 0..{dy}, got {h:?}"),
            ));
        }
        None if needs_head => {
            return Err(Error::Unsupported(format!(
                "`{solver}` adapts only the head: it needs a problem whose unrolled spec declares \
                 a head range (e.g. `meta_linear`); `{}` declares none",
                problem.name()
            )));
        }
        _ => {}
    }
    Ok(spec)
}

/// Forward pass of one task without recording: θ ← φ, then r steps
/// θ ← θ − α P∇l_j(θ) on task `task`'s support loss. Oracle calls: r × grad_y on g (one task).
pub fn adapt(
    g: &dyn Objective,
    phi: &Vector,
    task: usize,
    spec: &UnrolledSpec,
    coords: Option<std::ops::Range<usize>>,
    theta: &mut Vector,
    grad: &mut Vector,
) {
    theta.assign(phi);
    let tasks = [task];
    descend_on(
        g,
        phi,
        theta,
        spec.steps,
        spec.lr,
        |_| Batch::Indices(&tasks),
        coords,
        grad,
    );
}

/// As [`adapt`], storing θ₀ = φ, θ₁, …, θ_r in `trajectory` for [`reverse_sweep`].
pub fn adapt_recording(
    g: &dyn Objective,
    phi: &Vector,
    task: usize,
    spec: &UnrolledSpec,
    coords: Option<std::ops::Range<usize>>,
    theta: &mut Vector,
    grad: &mut Vector,
    trajectory: &mut Vec<Vector>,
) {
    theta.assign(phi);
    let tasks = [task];
    descend_recording_on(
        g,
        phi,
        theta,
        spec.steps,
        spec.lr,
        |_| Batch::Indices(&tasks),
        coords,
        grad,
        trajectory,
    );
}

/// The reverse sweep: a ← (I − αH₀P)(I − αH₁P)⋯(I − αH_{r−1}P) a, i.e. for k = r−1 down to 0,
/// a ← a − α ∇²l_j(θ_k) (P a), with the stored `trajectory` θ₀..θ_r of task `task`. On entry
/// `a` = ∇L_j(θ_r) gives ∇M_j(φ) on exit.
///
/// `clip` (UFO-BLO's option, algorithms.md §7.3): after each step, clip the recursion vector
/// elementwise on the step scale, α·a ∈ [−c, c] (a ∈ [−c/α, c/α]); `None` for the exact
/// product. `hv` and `pa` are scratch of length dim. Oracle calls: r × hvp_yy on g (one task).
pub fn reverse_sweep(
    g: &dyn Objective,
    phi: &Vector,
    task: usize,
    lr: f64,
    coords: Option<std::ops::Range<usize>>,
    clip: Option<f64>,
    trajectory: &[Vector],
    a: &mut Vector,
    hv: &mut Vector,
    pa: &mut Vector,
) {
    let tasks = [task];
    let batch = Batch::Indices(&tasks);
    let steps = trajectory.len().saturating_sub(1);
    for k in (0..steps).rev() {
        // §7.3: g_ex ← g_ex − α ∇²l_k(θ_k) (P g_ex)  (P = I unless only the head adapts).
        match &coords {
            None => g.hvp_yy(phi, &trajectory[k], a, batch, hv),
            Some(r) => {
                pa.set_zero();
                pa.as_mut_slice()[r.clone()].copy_from_slice(&a.as_slice()[r.clone()]);
                g.hvp_yy(phi, &trajectory[k], pa, batch, hv);
            }
        }
        a.axpy(-lr, hv);
        // §7.3 (optional): elementwise clip of the step-scale recursion vector α·g_ex to [−c, c].
        if let Some(c) = clip {
            let bound = c / lr;
            for ai in a.as_mut_slice() {
                *ai = ai.clamp(-bound, bound);
            }
        }
    }
}

/// Meta-batch settings shared by the meta solvers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetaBatch {
    /// Tasks per meta-step (clipped to the number of tasks).
    pub size: usize,
    /// How tasks are drawn.
    pub sampling: SamplingMode,
}

/// Scratch of the meta estimators (not serialized; rebuilt on first use).
#[derive(Clone, Debug, Default)]
pub struct MetaWork {
    /// Dim-sized vectors.
    pub vectors: Scratch,
    /// θ₀..θ_r of the current task.
    pub trajectory: Vec<Vector>,
    /// The current meta-batch of task indices.
    pub tasks: Vec<usize>,
    /// CG buffers (iMAML), made on first use.
    pub cg: Option<crate::linsolve::cg::CgWorkspace>,
}

/// The state every meta estimator carries: the reported inner iterate and the task sampler.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MetaState {
    /// The meta-batch mean of the adapted parameters θ_r at the last estimate (the inner iterate
    /// the runner reports; the start y₀ before the first step).
    #[serde(with = "serde_vector")]
    pub y: Vector,
    tasks: MinibatchSampler,
    /// Scratch.
    #[serde(skip)]
    pub work: MetaWork,
}

impl MetaState {
    /// Checks the problem and seeds the task sampler from `rng` (one draw).
    pub fn init(
        problem: &Problem,
        y0: Vector,
        batch: MetaBatch,
        rng: &mut Rng,
        solver: &str,
        needs_head: bool,
    ) -> Result<Self> {
        use rand::Rng as _;
        unrolled_spec(problem, solver, needs_head)?;
        let tasks = MinibatchSampler::new(
            problem.g().n_samples(),
            batch.size,
            batch.sampling,
            rng.next_u64(),
        )?;
        Ok(Self {
            y: y0,
            tasks,
            work: MetaWork::default(),
        })
    }

    /// Draws the next meta-batch into `work.tasks` and zeroes `y`; returns the meta-batch size.
    pub fn begin(&mut self) -> usize {
        self.tasks.draw_into(&mut self.work.tasks);
        self.y.set_zero();
        self.work.tasks.len()
    }
}
