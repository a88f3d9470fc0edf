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
