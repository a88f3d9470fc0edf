//! The exact [`Reference`] of an unrolled (meta-learning) problem: M(φ) and ∇M(φ) by
//! forward-mode differentiation of the defining inner loop (algorithms.md §7.1).
//!
//! For each task j (support loss l_j = g on task j, query loss L_j = f on task j):
//!
//! $$ \theta_0 = \phi,\ T_0 = I; \qquad
//!    T_{k+1} = (I - \alpha P H_k)\thinspace T_k,\ \ \theta_{k+1} = \theta_k - \alpha P \nabla l_j(\theta_k);
//!    \qquad \nabla M_j(\phi) = T_r^\top \nabla L_j(\theta_r), $$
//!
//! with H_k = ∇²l_j(θ_k) (applied column by column through the objective's exact `hvp_yy`) and
//! P the projection on the adapted coordinates (I, or the head for ANIL's objective). M(φ) =
//! mean_j L_j(θ_r). Forward mode costs dim × r HVPs per task: it is an independent check of the
//! solvers' reverse sweep, not a fast path.
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use std::ops::Range;
use std::sync::Arc;

use crate::core::linalg::axpy;
use crate::core::{Batch, Objective, Reference, ReferencePoint, Result, Vector, VectorExt};

/// M and ∇M of an unrolled problem by forward-mode differentiation.
pub struct MetaReference {
    f: Arc<dyn Objective>,
    g: Arc<dyn Objective>,
    steps: usize,
    lr: f64,
    adapted: Option<Range<usize>>,
}

impl MetaReference {
    /// The reference for query losses `f`, support losses `g` (one sample per task), `steps`
    /// inner steps of size `lr`, adapting the coordinates `adapted` (all when `None`).
    pub fn new(
        f: Arc<dyn Objective>,
        g: Arc<dyn Objective>,
        steps: usize,
        lr: f64,
        adapted: Option<Range<usize>>,
    ) -> Self {
        Self {
            f,
            g,
            steps,
            lr,
            adapted,
        }
    }

    /// θ_r of task `task` from φ (the defining inner loop).
    pub fn adapted_parameters(&self, phi: &Vector, task: usize) -> Vector {
        let n = phi.nrows();
        let tasks = [task];
        let batch = Batch::Indices(&tasks);
        let mut theta = phi.clone();
        let mut grad = Vector::zeros(n);
        for _ in 0..self.steps {
            self.g.grad_y(phi, &theta, batch, &mut grad);
            self.project(&mut grad);
            theta.axpy(-self.lr, &grad);
        }
        theta
    }

    fn project(&self, v: &mut Vector) {
        if let Some(r) = &self.adapted {
            let s = v.as_mut_slice();
            s[..r.start].fill(0.0);
            s[r.end..].fill(0.0);
        }
    }

    /// (M_j(φ), ∇M_j(φ)) of one task.
    pub fn task(&self, phi: &Vector, task: usize) -> (f64, Vector) {
        let n = phi.nrows();
        let tasks = [task];
        let batch = Batch::Indices(&tasks);
        let mut theta = phi.clone();
        // Tangents: column c of T, i.e. ∂θ_k/∂φ_c.
        let mut tangents: Vec<Vector> = (0..n)
            .map(|c| Vector::from_fn(n, |i| if i == c { 1.0 } else { 0.0 }))
            .collect();
        let mut grad = Vector::zeros(n);
        let mut hv = Vector::zeros(n);
        for _ in 0..self.steps {
            // T ← (I − αPH_k) T, with H_k at θ_k (before the step).
            for t in tangents.iter_mut() {
                self.g.hvp_yy(phi, &theta, t, batch, &mut hv);
                self.project(&mut hv);
                t.axpy(-self.lr, &hv);
            }
            // θ ← θ − αP∇l_j(θ).
            self.g.grad_y(phi, &theta, batch, &mut grad);
            self.project(&mut grad);
            theta.axpy(-self.lr, &grad);
        }
        let value = self.f.value(phi, &theta, batch);
        self.f.grad_y(phi, &theta, batch, &mut grad);
        let mut meta_grad = Vector::zeros(n);
        for (c, t) in tangents.iter().enumerate() {
            meta_grad.as_mut_slice()[c] = t.dot(&grad);
        }
        (value, meta_grad)
    }
}

impl Reference for MetaReference {
    fn evaluate(&self, phi: &Vector) -> Result<ReferencePoint> {
        let n_tasks = self.g.n_samples();
        let mut value = 0.0;
        let mut hypergradient = Vector::zeros(phi.nrows());
        for j in 0..n_tasks {
            let (v, grad) = self.task(phi, j);
            value += v / n_tasks as f64;
            axpy(
                1.0 / n_tasks as f64,
                grad.as_slice(),
                hypergradient.as_mut_slice(),
            );
        }
        Ok(ReferencePoint {
            value,
            hypergradient,
            y_star: None,
        })
    }
}
