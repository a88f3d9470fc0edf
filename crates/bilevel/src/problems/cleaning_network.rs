//! Data hyper-cleaning with a network classifier: [`super::data_cleaning`] with
//! `model = "mlp"`. The inner variable y = θ is the parameter vector of an MLP of
//! [`crate::nn`] (softmax cross-entropy on K outputs) instead of the linear W:
//!
//! ```text
//! g(x, θ) = (1/|B|) Σ_{i∈B} σ(xᵢ) CE(net_θ(aᵢ), b̃ᵢ) + C ‖θ‖²,   f(x, θ) = (1/|B'|) Σ_{i∈B'} CE(net_θ(a'ᵢ), b'ᵢ)
//! ```
//!
//! With ℓᵢ = CE(net_θ(aᵢ), b̃ᵢ), every oracle is exact (no finite differences):
//! - ∇_θ g and ∇²_θθ g · v: backpropagation and the R-op on the σ(xᵢ)-weighted mean;
//! - ∂g/∂xᵢ = σ'(xᵢ) ℓᵢ / |B| per occurrence of i in the batch;
//! - (∇²ₓθ g · v)ᵢ = σ'(xᵢ) (∇ℓᵢ · v) / |B|, with ∇ℓᵢ · v = ⟨∂ℓᵢ/∂oᵢ, J_i v⟩ from one
//!   R-forward pass;
//! - ∇²θₓ g · u = (1/|B|) Σ uᵢ σ'(xᵢ) ∇ℓᵢ: backpropagation with weights uᵢ σ'(xᵢ).
//!
//! The inner problem is not convex in θ, so it has no exact reference; the linear model keeps
//! its Newton-CG reference.

use std::sync::{Arc, Mutex};

use super::common::sigmoid;
use crate::core::{Batch, Objective, Vector, VectorExt};
use crate::nn::{Mlp, Targets, Workspace, correct_predictions};

/// Buffers of one objective.
struct Scratch {
    ws: Workspace<f64>,
    /// The batch's rows (the whole set for a full batch).
    rows: Vec<usize>,
    /// One weight per batch row.
    weights: Vec<f64>,
}

/// One level of hyper-cleaning on a network: the σ(xᵢ)-weighted training loss plus C‖θ‖²
/// (`weighted`), or the plain mean loss of a validation or test set.
pub struct CleaningNetwork {
    net: Arc<Mlp>,
    /// n × inputs, row-major.
    inputs: Arc<[f64]>,
    classes: Vec<usize>,
    dim_x: usize,
    weighted: bool,
    regularization: f64,
    scratch: Mutex<Scratch>,
}

impl CleaningNetwork {
    /// The σ(xᵢ)-weighted training level (x has one entry per row) with penalty C‖θ‖².
    pub(crate) fn training(
        net: Arc<Mlp>,
        inputs: Arc<[f64]>,
        classes: Vec<usize>,
        regularization: f64,
    ) -> Self {
        let dim_x = classes.len();
        Self::new(net, inputs, classes, dim_x, true, regularization)
    }

    /// An unweighted level (validation or test) of a problem whose x has `dim_x` entries.
    pub(crate) fn plain(
        net: Arc<Mlp>,
        inputs: Arc<[f64]>,
        classes: Vec<usize>,
        dim_x: usize,
    ) -> Self {
        Self::new(net, inputs, classes, dim_x, false, 0.0)
    }

    fn new(
        net: Arc<Mlp>,
        inputs: Arc<[f64]>,
        classes: Vec<usize>,
        dim_x: usize,
        weighted: bool,
        regularization: f64,
    ) -> Self {
        assert_eq!(
            inputs.len(),
            classes.len() * net.inputs(),
            "cleaning network: inputs not rows × the network's input width"
        );
        Self {
            net,
            inputs,
            classes,
            dim_x,
            weighted,
            regularization,
            scratch: Mutex::new(Scratch {
                ws: Workspace::new(),
                rows: Vec::new(),
                weights: Vec::new(),
            }),
        }
    }

    fn n(&self) -> usize {
        self.classes.len()
    }

    fn scratch(&self) -> std::sync::MutexGuard<'_, Scratch> {
        self.scratch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fills the scratch's rows with the batch's and its weights with `weight(i)` per row.
    fn prepare(&self, batch: Batch<'_>, s: &mut Scratch, weight: impl Fn(usize) -> f64) {
        s.rows.clear();
        match batch {
            Batch::Full => s.rows.extend(0..self.n()),
            Batch::Indices(idx) => {
                assert!(!idx.is_empty(), "cleaning network: empty batch");
                for &i in idx {
                    assert!(i < self.n(), "cleaning network: sample {i} out of range");
                }
                s.rows.extend_from_slice(idx);
            }
        }
        s.weights.clear();
        s.weights.extend(s.rows.iter().map(|&i| weight(i)));
    }

    /// The weight of row i at x: σ(xᵢ) on the training level, 1 elsewhere.
    fn weight_of<'a>(&self, x: &'a [f64]) -> impl Fn(usize) -> f64 + 'a {
        let weighted = self.weighted;
        move |i| if weighted { sigmoid(x[i]) } else { 1.0 }
    }

    /// The mean loss and the accuracy of θ on every row (for the metrics): one forward pass.
    pub(crate) fn loss_and_accuracy(&self, theta: &Vector) -> (f64, f64) {
        let mut s = self.scratch();
        let loss = self.net.loss_grad(
            theta.as_slice(),
            &self.inputs,
            Targets::Classes(&self.classes),
            None,
            None,
            &mut s.ws,
        );
        let scores = self.net.last_outputs(&s.ws);
        let correct = correct_predictions(scores, self.net.outputs(), &self.classes);
        (loss, correct as f64 / self.n() as f64)
    }

    /// out = 0, then outᵢ += σ'(xᵢ) qᵣ / |B| for each batch row r of sample i: the x-side of
    /// the weighting, for a per-row quantity q (the row's loss for ∇ₓg, its slope ∇ℓᵣ·v for
    /// ∇²ₓθ g·v).
    fn add_weight_slopes(x: &Vector, rows: &[usize], per_row: &[f64], out: &mut Vector) {
        out.set_zero();
        let (xs, o) = (x.as_slice(), out.as_mut_slice());
        let inv = 1.0 / rows.len() as f64;
        for (&i, &q) in rows.iter().zip(per_row) {
            o[i] += dsigmoid(xs[i]) * q * inv;
        }
    }
}

#[inline]
fn dsigmoid(t: f64) -> f64 {
    let s = sigmoid(t);
    s * (1.0 - s)
}

impl Objective for CleaningNetwork {
    fn dims(&self) -> (usize, usize) {
        (self.dim_x, self.net.num_params())
    }
    fn n_samples(&self) -> usize {
        self.n()
    }
    fn value(&self, x: &Vector, y: &Vector, batch: Batch<'_>) -> f64 {
        let mut s = self.scratch();
        let s = &mut *s;
        self.prepare(batch, s, self.weight_of(x.as_slice()));
        let loss = self.net.weighted_loss_grad(
            y.as_slice(),
            &self.inputs,
            Targets::Classes(&self.classes),
            Some(&s.rows),
            &s.weights,
            None,
            &mut s.ws,
        );
        loss + self.regularization * y.norm_sq()
    }
    fn grad_x(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        out.set_zero();
        if !self.weighted {
            return;
        }
        let mut s = self.scratch();
        let s = &mut *s;
        self.prepare(batch, s, |_| 1.0);
        self.net.loss_grad(
            y.as_slice(),
            &self.inputs,
            Targets::Classes(&self.classes),
            Some(&s.rows),
            None,
            &mut s.ws,
        );
        Self::add_weight_slopes(x, &s.rows, self.net.row_losses(&s.ws), out);
    }
    fn grad_y(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        let mut s = self.scratch();
        let s = &mut *s;
        self.prepare(batch, s, self.weight_of(x.as_slice()));
        self.net.weighted_loss_grad(
            y.as_slice(),
            &self.inputs,
            Targets::Classes(&self.classes),
            Some(&s.rows),
            &s.weights,
            Some(out.as_mut_slice()),
            &mut s.ws,
        );
        if self.regularization > 0.0 {
            out.axpy(2.0 * self.regularization, y);
        }
    }
    fn hvp_yy(&self, x: &Vector, y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        let mut s = self.scratch();
        let s = &mut *s;
        self.prepare(batch, s, self.weight_of(x.as_slice()));
        self.net.weighted_hvp(
            y.as_slice(),
            v.as_slice(),
            &self.inputs,
            Targets::Classes(&self.classes),
            Some(&s.rows),
            &s.weights,
            None,
            out.as_mut_slice(),
            &mut s.ws,
        );
        if self.regularization > 0.0 {
            out.axpy(2.0 * self.regularization, v);
        }
    }
    fn cross_xy(&self, x: &Vector, y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        out.set_zero();
        if !self.weighted {
            return;
        }
        let mut s = self.scratch();
        let s = &mut *s;
        self.prepare(batch, s, |_| 1.0);
        let (_, slopes) = self.net.row_loss_slopes(
            y.as_slice(),
            v.as_slice(),
            &self.inputs,
            Targets::Classes(&self.classes),
            Some(&s.rows),
            &mut s.ws,
        );
        Self::add_weight_slopes(x, &s.rows, slopes, out);
    }
    fn cross_yx(&self, x: &Vector, y: &Vector, u: &Vector, batch: Batch<'_>, out: &mut Vector) {
        if !self.weighted {
            out.set_zero();
            return;
        }
        let mut s = self.scratch();
        let s = &mut *s;
        let (xs, us) = (x.as_slice(), u.as_slice());
        self.prepare(batch, s, |i| us[i] * dsigmoid(xs[i]));
        self.net.weighted_loss_grad(
            y.as_slice(),
            &self.inputs,
            Targets::Classes(&self.classes),
            Some(&s.rows),
            &s.weights,
            Some(out.as_mut_slice()),
            &mut s.ws,
        );
    }
}
