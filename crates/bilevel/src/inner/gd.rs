//! Warm-started (stochastic) gradient descent on the inner problem.

use crate::core::{Batch, MinibatchSampler, Objective, Vector, VectorExt};

/// `steps` steps of y ← y − lr · ∇ᵧg(x, y; B) from the current `y` (warm start). Each step draws
/// a fresh minibatch B from `sampler`, or uses the full batch when `sampler` is `None`. `grad` is
/// scratch of length dim y. Oracle calls: `steps` × grad_y.
pub fn descend(
    g: &dyn Objective,
    x: &Vector,
    y: &mut Vector,
    steps: usize,
    lr: f64,
    mut sampler: Option<&mut MinibatchSampler>,
    grad: &mut Vector,
) {
    for _ in 0..steps {
        match sampler.as_deref_mut() {
            Some(s) => g.grad_y(x, y, Batch::Indices(s.draw()), grad),
            None => g.grad_y(x, y, Batch::Full, grad),
        }
        y.axpy(-lr, grad);
    }
}

/// As [`descend`], recording the trajectory: on return `trajectory` holds y₀ (the start), y₁, …,
/// y_T (T + 1 vectors), reusing its existing allocations. Used by reverse-mode unrolling (ITD,
/// MAML, UFO-BLO), which needs the stored iterates for its backward sweep.
pub fn descend_recording(
    g: &dyn Objective,
    x: &Vector,
    y: &mut Vector,
    steps: usize,
    lr: f64,
    mut sampler: Option<&mut MinibatchSampler>,
    grad: &mut Vector,
    trajectory: &mut Vec<Vector>,
) {
    trajectory.truncate(steps + 1);
    let record = |trajectory: &mut Vec<Vector>, k: usize, y: &Vector| {
        if let Some(slot) = trajectory.get_mut(k) {
            if slot.nrows() == y.nrows() {
                slot.assign(y);
            } else {
                *slot = y.clone();
            }
        } else {
            trajectory.push(y.clone());
        }
    };
    record(trajectory, 0, y);
    for k in 0..steps {
        match sampler.as_deref_mut() {
            Some(s) => g.grad_y(x, y, Batch::Indices(s.draw()), grad),
            None => g.grad_y(x, y, Batch::Full, grad),
        }
        y.axpy(-lr, grad);
        record(trajectory, k + 1, y);
    }
}

/// As [`descend`] with a replayable batch sequence: step k uses `batch_at(k)`, and only the
/// coordinates `coords` move (all of them when `None`):
/// y_{k+1}\[coords\] = y_k\[coords\] − lr · ∇ᵧg(x, y_k; batch_at(k))\[coords\].
///
/// ESJ-S replays the same sequence on the unperturbed and every perturbed trajectory (common
/// random numbers); the meta solvers pass one task's index at every step, and ANIL restricts the
/// step to the head coordinates. Oracle calls: `steps` × grad_y.
pub fn descend_on<'b>(
    g: &dyn Objective,
    x: &Vector,
    y: &mut Vector,
    steps: usize,
    lr: f64,
    batch_at: impl Fn(usize) -> Batch<'b>,
    coords: Option<std::ops::Range<usize>>,
    grad: &mut Vector,
) {
    for k in 0..steps {
        g.grad_y(x, y, batch_at(k), grad);
        step_on(y, lr, grad, coords.clone());
    }
}

/// As [`descend_on`], recording the trajectory y₀ (the start), y₁, …, y_T into `trajectory`
/// (T + 1 vectors, reusing its allocations), for a reverse sweep (MAML, UFO-BLO, ANIL).
pub fn descend_recording_on<'b>(
    g: &dyn Objective,
    x: &Vector,
    y: &mut Vector,
    steps: usize,
    lr: f64,
    batch_at: impl Fn(usize) -> Batch<'b>,
    coords: Option<std::ops::Range<usize>>,
    grad: &mut Vector,
    trajectory: &mut Vec<Vector>,
) {
    trajectory.truncate(steps + 1);
    let record = |trajectory: &mut Vec<Vector>, k: usize, y: &Vector| match trajectory.get_mut(k) {
        Some(slot) if slot.nrows() == y.nrows() => slot.assign(y),
        Some(slot) => *slot = y.clone(),
        None => trajectory.push(y.clone()),
    };
    record(trajectory, 0, y);
    for k in 0..steps {
        g.grad_y(x, y, batch_at(k), grad);
        step_on(y, lr, grad, coords.clone());
        record(trajectory, k + 1, y);
    }
}

/// y[coords] ← y[coords] − lr · grad[coords] (every coordinate when `coords` is `None`).
#[inline]
fn step_on(y: &mut Vector, lr: f64, grad: &Vector, coords: Option<std::ops::Range<usize>>) {
    match coords {
        None => y.axpy(-lr, grad),
        Some(r) => {
            crate::core::linalg::axpy(-lr, &grad.as_slice()[r.clone()], &mut y.as_mut_slice()[r])
        }
    }
}
