//! Logistic losses over a design matrix, as per-row streaming kernels shared by
//! [`logreg_hpo`](super::logreg_hpo) and [`data_cleaning`](super::data_cleaning).
//!
//! Binary: labels b ∈ {−1, +1}, model w ∈ ℝ^d (plus an intercept when enabled),
//! ℓᵢ(w) = log(1 + exp(−bᵢ xᵢ·w)). Multiclass: classes 0..K, model W ∈ ℝ^{d×K} stored
//! feature-major (entry (j, c) at `j·K + c`; an intercept adds a last row), cross-entropy
//! ℓᵢ(W) = log Σ_c exp(zᵢc) − zᵢ,bᵢ with zᵢ = Wᵀxᵢ. Per-sample derivatives:
//! ∇ℓᵢ = xᵢ ⊗ rᵢ with r = −b σ(−b z) (binary) or p − e_b (multiclass, p = softmax z), and
//! ∇²ℓᵢ·V = xᵢ ⊗ (σ(z)σ(−z) u) or xᵢ ⊗ (p⊙u − p (p·u)) with u = Vᵀxᵢ.

use super::common::{
    Rows, for_each_sample, sigmoid, softmax_in_place, softplus, with_rows, with_scratch,
};
use crate::core::Batch;
use crate::data::Design;

/// Targets of a logistic loss.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// ±1 labels.
    Binary(Vec<f64>),
    /// Class indices in 0..k.
    Multiclass {
        /// Class of each sample.
        class: Vec<u32>,
        /// Number of classes K.
        k: usize,
    },
}

/// A design with logistic targets.
#[derive(Clone, Debug)]
pub struct LogisticData {
    pub(crate) design: Design,
    pub(crate) targets: Targets,
    pub(crate) intercept: bool,
}

impl LogisticData {
    /// Data for a logistic loss; `intercept` adds a bias (a last row of W, a last entry of w).
    pub fn new(design: Design, targets: Targets, intercept: bool) -> Self {
        Self {
            design,
            targets,
            intercept,
        }
    }
    /// Samples.
    pub fn n(&self) -> usize {
        self.design.rows()
    }
    /// Outputs per sample: 1 (binary) or K.
    pub fn k(&self) -> usize {
        match &self.targets {
            Targets::Binary(_) => 1,
            Targets::Multiclass { k, .. } => *k,
        }
    }
    /// Rows of the model (features, +1 with an intercept).
    pub fn model_rows(&self) -> usize {
        self.design.cols() + usize::from(self.intercept)
    }
    /// Length of the model vector.
    pub fn dim(&self) -> usize {
        self.model_rows() * self.k()
    }

    /// z ← model outputs of sample i (length k).
    #[inline]
    fn outputs<R: Rows>(&self, r: &R, i: usize, y: &[f64], z: &mut [f64]) {
        let d = r.n_cols();
        let k = z.len();
        if k == 1 {
            z[0] = r.dot(i, y);
        } else {
            z.fill(0.0);
            r.gemv_k(i, y, z);
        }
        if self.intercept {
            for (zc, &b) in z.iter_mut().zip(&y[d * k..(d + 1) * k]) {
                *zc += b;
            }
        }
    }

    /// out ← out + α xᵢ ⊗ r (and the intercept row).
    #[inline]
    fn back<R: Rows>(&self, r: &R, i: usize, alpha: f64, res: &[f64], out: &mut [f64]) {
        let d = r.n_cols();
        let k = res.len();
        if k == 1 {
            r.axpy(i, alpha * res[0], out);
        } else if alpha == 1.0 {
            r.ger_k(i, res, out);
        } else {
            // Scaled copy of r on the stack would need k known; scale in place and restore.
            with_alpha(res, alpha, |scaled| r.ger_k(i, scaled, out));
        }
        if self.intercept {
            for (o, &rc) in out[d * k..(d + 1) * k].iter_mut().zip(res) {
                *o += alpha * rc;
            }
        }
    }

    /// Turns the outputs `z` of sample i into the residual ∂ℓ/∂z and fills `p` with what the
    /// curvature needs: σ(−bz) for binary (so σ(z)σ(−z) = p(1 − p)), the softmax for multiclass.
    /// Returns the loss when `want_loss` (binary: one more exp/log1p; otherwise 0).
    #[inline]
    fn loss_residual(&self, i: usize, z: &mut [f64], p: &mut [f64], want_loss: bool) -> f64 {
        match &self.targets {
            Targets::Binary(b) => {
                let m = b[i] * z[0];
                let s = sigmoid(-m);
                p[0] = s;
                z[0] = -b[i] * s;
                if want_loss { softplus(-m) } else { 0.0 }
            }
            Targets::Multiclass { class, .. } => {
                let c = class[i] as usize;
                let zc = z[c];
                p.copy_from_slice(z);
                let lse = softmax_in_place(p);
                z.copy_from_slice(p);
                z[c] -= 1.0;
                lse - zc
            }
        }
    }

    /// Σ_B w(i) ℓᵢ / |B|.
    pub(crate) fn value(&self, y: &[f64], batch: Batch<'_>, weight: impl Fn(usize) -> f64) -> f64 {
        let k = self.k();
        with_scratch(2 * k, |buf| {
            let (z, p) = buf.split_at_mut(k);
            with_rows!(&self.design, |r| {
                let mut total = 0.0;
                let scale = for_each_sample(batch, self.n(), |i| {
                    self.outputs(r, i, y, z);
                    total += weight(i) * self.loss_residual(i, z, p, true);
                });
                total * scale
            })
        })
    }

    /// out ← Σ_B w(i) ∇ℓᵢ / |B| (losses not computed).
    pub(crate) fn grad(
        &self,
        y: &[f64],
        batch: Batch<'_>,
        weight: impl Fn(usize) -> f64,
        out: &mut [f64],
    ) {
        self.grad_impl::<false>(y, batch, weight, out, |_, _, _| {});
    }

    /// As [`grad`](Self::grad), and `on_loss(i, ℓᵢ, 1/|B|)` sees every sample's loss.
    pub(crate) fn grad_with_losses(
        &self,
        y: &[f64],
        batch: Batch<'_>,
        weight: impl Fn(usize) -> f64,
        out: &mut [f64],
        on_loss: impl FnMut(usize, f64, f64),
    ) {
        self.grad_impl::<true>(y, batch, weight, out, on_loss);
    }

    #[inline]
    fn grad_impl<const LOSS: bool>(
        &self,
        y: &[f64],
        batch: Batch<'_>,
        weight: impl Fn(usize) -> f64,
        out: &mut [f64],
        mut on_loss: impl FnMut(usize, f64, f64),
    ) {
        let k = self.k();
        out.fill(0.0);
        let n = self.n();
        let inv = 1.0 / batch.len(n).max(1) as f64;
        with_scratch(2 * k, |buf| {
            let (z, p) = buf.split_at_mut(k);
            with_rows!(&self.design, |r| {
                for_each_sample(batch, n, |i| {
                    self.outputs(r, i, y, z);
                    let loss = self.loss_residual(i, z, p, LOSS);
                    if LOSS {
                        on_loss(i, loss, inv);
                    }
                    let w = weight(i);
                    if w != 0.0 {
                        self.back(r, i, w * inv, z, out);
                    }
                });
            })
        })
    }

    /// out ← Σ_B w(i) ∇²ℓᵢ v / |B|.
    pub(crate) fn hvp(
        &self,
        y: &[f64],
        v: &[f64],
        batch: Batch<'_>,
        weight: impl Fn(usize) -> f64,
        out: &mut [f64],
    ) {
        let k = self.k();
        out.fill(0.0);
        let n = self.n();
        let inv = 1.0 / batch.len(n).max(1) as f64;
        with_scratch(3 * k, |buf| {
            let (z, rest) = buf.split_at_mut(k);
            let (p, u) = rest.split_at_mut(k);
            with_rows!(&self.design, |r| {
                for_each_sample(batch, n, |i| {
                    let w = weight(i);
                    if w == 0.0 {
                        return;
                    }
                    self.outputs(r, i, y, z);
                    self.loss_residual(i, z, p, false);
                    self.outputs(r, i, v, u);
                    if k == 1 {
                        u[0] *= p[0] * (1.0 - p[0]);
                    } else {
                        let pu: f64 = p.iter().zip(u.iter()).map(|(a, b)| a * b).sum();
                        for (uc, &pc) in u.iter_mut().zip(p.iter()) {
                            *uc = pc * (*uc - pu);
                        }
                    }
                    self.back(r, i, w * inv, u, out);
                });
            })
        })
    }

    /// Calls `f(i, ∇ℓᵢ·v, 1/|B|)` for every sample of the batch.
    pub(crate) fn directional(
        &self,
        y: &[f64],
        v: &[f64],
        batch: Batch<'_>,
        mut f: impl FnMut(usize, f64, f64),
    ) {
        let k = self.k();
        let n = self.n();
        let inv = 1.0 / batch.len(n).max(1) as f64;
        with_scratch(3 * k, |buf| {
            let (z, rest) = buf.split_at_mut(k);
            let (p, u) = rest.split_at_mut(k);
            with_rows!(&self.design, |r| {
                for_each_sample(batch, n, |i| {
                    self.outputs(r, i, y, z);
                    self.loss_residual(i, z, p, false);
                    self.outputs(r, i, v, u);
                    let dd: f64 = z.iter().zip(u.iter()).map(|(a, b)| a * b).sum();
                    f(i, dd, inv);
                });
            })
        })
    }

    /// (mean loss, accuracy) of the model `y` on every sample (unweighted).
    pub fn evaluate(&self, y: &[f64]) -> (f64, f64) {
        let k = self.k();
        with_scratch(2 * k, |buf| {
            let (z, p) = buf.split_at_mut(k);
            with_rows!(&self.design, |r| {
                let (mut loss, mut correct) = (0.0, 0usize);
                for i in 0..self.n() {
                    self.outputs(r, i, y, z);
                    let right =
                        match &self.targets {
                            Targets::Binary(b) => z[0] * b[i] > 0.0,
                            Targets::Multiclass { class, .. } => {
                                let best =
                                    z.iter()
                                        .enumerate()
                                        .fold((0, f64::NEG_INFINITY), |a, (c, &v)| {
                                            if v > a.1 { (c, v) } else { a }
                                        })
                                        .0;
                                best == class[i] as usize
                            }
                        };
                    correct += usize::from(right);
                    loss += self.loss_residual(i, z, p, true);
                }
                let n = self.n().max(1) as f64;
                (loss / n, correct as f64 / n)
            })
        })
    }
}

/// Runs `f` on α·r using a small stack buffer (K ≤ 64) or a heap copy beyond.
#[inline]
fn with_alpha(res: &[f64], alpha: f64, f: impl FnOnce(&[f64])) {
    let k = res.len();
    if k <= 64 {
        let mut buf = [0.0f64; 64];
        for (b, &r) in buf.iter_mut().zip(res) {
            *b = alpha * r;
        }
        f(&buf[..k]);
    } else {
        let scaled: Vec<f64> = res.iter().map(|r| alpha * r).collect();
        f(&scaled);
    }
}
