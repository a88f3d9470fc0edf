//! # The LancBiO synthetic problem (algorithms.md §3.7.1)
//!
//! x, y ∈ ℝⁿ, deterministic, non-quadratic and ill-conditioned:
//!
//! $$ f(x, y) = 0.1 \cos\big(x^\top (c \odot y)\big) + \tfrac12 \lVert d \odot x - y \rVert^2, $$
//! $$ g(x, y) = \gamma \sum_i \sin(x_i + y_i) + \log \sum_i e^{x_i y_i}
//!    + \tfrac12 y^\top \mathrm{diag}(h)\thinspace y + \tfrac12 y^\top G y, $$
//!
//! with γ = 0.5, c_i ~ U(−5, 5), d_i ~ U(0.1, 1.1), h_i ~ U(0, γ), and
//! G = Q diag(linspace(1, κ, n)) Qᵀ for a random orthogonal Q (QR of a Gaussian matrix).
//! ∇²ᵧᵧg ⪰ (1 − γ) I, so g is strongly convex in y (μ ≥ 0.5) with condition number ≈ 2κ.
//!
//! The paper uses n = 10⁴ and κ = 10⁵; G is stored dense (n² entries), so the default here is
//! n = 100 (κ = 10⁵ kept). All products are closed-form: with s = softmax(x ⊙ y) and
//! t = xᵀ(c ⊙ y),
//! - ∇ᵧg = γ cos(x+y) + x ⊙ s + h ⊙ y + G y, ∇ₓg = γ cos(x+y) + y ⊙ s;
//! - ∇²ᵧᵧg v = −γ sin(x+y) ⊙ v + x ⊙ (s ⊙ (x ⊙ v) − s (sᵀ(x ⊙ v))) + h ⊙ v + G v;
//! - ∇²ₓᵧg v = (s − γ sin(x+y)) ⊙ v + y ⊙ s ⊙ (x ⊙ v) − (y ⊙ s)(sᵀ(x ⊙ v));
//! - ∇²ᵧₓg u = (s − γ sin(x+y)) ⊙ u + x ⊙ s ⊙ (y ⊙ u) − (x ⊙ s)(sᵀ(y ⊙ u));
//! - ∇ᵧf = −0.1 sin(t) c ⊙ x − (d ⊙ x − y), ∇ₓf = −0.1 sin(t) c ⊙ y + d ⊙ (d ⊙ x − y).
//!
//! The reference is a warm-started Newton-CG solve (the paper's reference: 500 inner GD steps
//! and CG to 1e-10). Start: x₀ = 0, y₀ = 0 unless set. The problem draw has its own `seed`.
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::common::{NewtonReference, ReferenceConfig, softmax_in_place, with_scratch};
use crate::core::error::{Error, Result, check_at_least, check_positive};
use crate::core::linalg::{rng_from_seed, standard_normal, uniform01};
use crate::core::{Batch, Matrix, Objective, Problem, Vector, VectorExt};

/// Configuration of [`lancbio_synthetic`](self).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LancbioSyntheticConfig {
    /// n, the dimension of x and y (G is n × n dense).
    pub dim: usize,
    /// κ, the largest eigenvalue of G (the smallest is 1).
    pub kappa: f64,
    /// γ.
    pub gamma: f64,
    /// Seed of the problem draw.
    pub seed: u64,
    /// The exact reference.
    pub reference: ReferenceConfig,
}

impl Default for LancbioSyntheticConfig {
    fn default() -> Self {
        Self {
            dim: 100,
            kappa: 1e5,
            gamma: 0.5,
            seed: 0,
            reference: ReferenceConfig::default(),
        }
    }
}

/// The inner objective g.
pub struct LancbioInner {
    gamma: f64,
    h: Vec<f64>,
    /// G, row-major n × n.
    g: Vec<f64>,
}

/// The outer objective f.
pub struct LancbioOuter {
    c: Vec<f64>,
    d: Vec<f64>,
}

impl LancbioInner {
    /// s = softmax(x ⊙ y) into `s`; returns log Σ exp(x ⊙ y).
    fn softmax(x: &[f64], y: &[f64], s: &mut [f64]) -> f64 {
        for ((si, &xi), &yi) in s.iter_mut().zip(x).zip(y) {
            *si = xi * yi;
        }
        softmax_in_place(s)
    }
}

impl Objective for LancbioInner {
    fn dims(&self) -> (usize, usize) {
        (self.h.len(), self.h.len())
    }
    fn value(&self, x: &Vector, y: &Vector, _batch: Batch<'_>) -> f64 {
        let (xs, ys) = (x.as_slice(), y.as_slice());
        let n = ys.len();
        with_scratch(n, |s| {
            let lse = Self::softmax(xs, ys, s);
            let mut total = lse;
            for i in 0..n {
                total += self.gamma * (xs[i] + ys[i]).sin() + 0.5 * self.h[i] * ys[i] * ys[i];
                let gy = crate::core::linalg::dot(&self.g[i * n..(i + 1) * n], ys);
                total += 0.5 * ys[i] * gy;
            }
            total
        })
    }
    fn grad_x(&self, x: &Vector, y: &Vector, _batch: Batch<'_>, out: &mut Vector) {
        let (xs, ys) = (x.as_slice(), y.as_slice());
        let o = out.as_mut_slice();
        with_scratch(ys.len(), |s| {
            Self::softmax(xs, ys, s);
            for i in 0..ys.len() {
                o[i] = self.gamma * (xs[i] + ys[i]).cos() + ys[i] * s[i];
            }
        });
    }
    fn grad_y(&self, x: &Vector, y: &Vector, _batch: Batch<'_>, out: &mut Vector) {
        let (xs, ys) = (x.as_slice(), y.as_slice());
        let n = ys.len();
        let o = out.as_mut_slice();
        crate::core::linalg::gemv(&self.g, n, n, ys, o);
        with_scratch(n, |s| {
            Self::softmax(xs, ys, s);
            for i in 0..n {
                o[i] += self.gamma * (xs[i] + ys[i]).cos() + xs[i] * s[i] + self.h[i] * ys[i];
            }
        });
    }
    fn hvp_yy(&self, x: &Vector, y: &Vector, v: &Vector, _batch: Batch<'_>, out: &mut Vector) {
        let (xs, ys, vs) = (x.as_slice(), y.as_slice(), v.as_slice());
        let n = ys.len();
        let o = out.as_mut_slice();
        crate::core::linalg::gemv(&self.g, n, n, vs, o);
        with_scratch(n, |s| {
            Self::softmax(xs, ys, s);
            let sxv: f64 = (0..n).map(|i| s[i] * xs[i] * vs[i]).sum();
            for i in 0..n {
                o[i] += -self.gamma * (xs[i] + ys[i]).sin() * vs[i]
                    + xs[i] * s[i] * (xs[i] * vs[i] - sxv)
                    + self.h[i] * vs[i];
            }
        });
    }
    fn cross_xy(&self, x: &Vector, y: &Vector, v: &Vector, _batch: Batch<'_>, out: &mut Vector) {
        let (xs, ys, vs) = (x.as_slice(), y.as_slice(), v.as_slice());
        let n = ys.len();
        let o = out.as_mut_slice();
        with_scratch(n, |s| {
            Self::softmax(xs, ys, s);
            let sxv: f64 = (0..n).map(|i| s[i] * xs[i] * vs[i]).sum();
            for i in 0..n {
                o[i] = (s[i] - self.gamma * (xs[i] + ys[i]).sin()) * vs[i]
                    + ys[i] * s[i] * (xs[i] * vs[i] - sxv);
            }
        });
    }
    fn cross_yx(&self, x: &Vector, y: &Vector, u: &Vector, _batch: Batch<'_>, out: &mut Vector) {
        let (xs, ys, us) = (x.as_slice(), y.as_slice(), u.as_slice());
        let n = ys.len();
        let o = out.as_mut_slice();
        with_scratch(n, |s| {
            Self::softmax(xs, ys, s);
            let syu: f64 = (0..n).map(|i| s[i] * ys[i] * us[i]).sum();
            for i in 0..n {
                o[i] = (s[i] - self.gamma * (xs[i] + ys[i]).sin()) * us[i]
                    + xs[i] * s[i] * (ys[i] * us[i] - syu);
            }
        });
    }
}

impl LancbioOuter {
    fn t(&self, x: &[f64], y: &[f64]) -> f64 {
        (0..x.len()).map(|i| x[i] * self.c[i] * y[i]).sum()
    }
}

impl Objective for LancbioOuter {
    fn dims(&self) -> (usize, usize) {
        (self.c.len(), self.c.len())
    }
    fn value(&self, x: &Vector, y: &Vector, _batch: Batch<'_>) -> f64 {
        let (xs, ys) = (x.as_slice(), y.as_slice());
        let sq: f64 = (0..xs.len())
            .map(|i| (self.d[i] * xs[i] - ys[i]).powi(2))
            .sum();
        0.1 * self.t(xs, ys).cos() + 0.5 * sq
    }
    fn grad_x(&self, x: &Vector, y: &Vector, _batch: Batch<'_>, out: &mut Vector) {
        let (xs, ys) = (x.as_slice(), y.as_slice());
        let st = self.t(xs, ys).sin();
        for (i, o) in out.as_mut_slice().iter_mut().enumerate() {
            *o = -0.1 * st * self.c[i] * ys[i] + self.d[i] * (self.d[i] * xs[i] - ys[i]);
        }
    }
    fn grad_y(&self, x: &Vector, y: &Vector, _batch: Batch<'_>, out: &mut Vector) {
        let (xs, ys) = (x.as_slice(), y.as_slice());
        let st = self.t(xs, ys).sin();
        for (i, o) in out.as_mut_slice().iter_mut().enumerate() {
            *o = -0.1 * st * self.c[i] * xs[i] - (self.d[i] * xs[i] - ys[i]);
        }
    }
    fn hvp_yy(&self, x: &Vector, y: &Vector, v: &Vector, _batch: Batch<'_>, out: &mut Vector) {
        let (xs, ys, vs) = (x.as_slice(), y.as_slice(), v.as_slice());
        let ct = self.t(xs, ys).cos();
        let cxv: f64 = (0..xs.len()).map(|i| self.c[i] * xs[i] * vs[i]).sum();
        for (i, o) in out.as_mut_slice().iter_mut().enumerate() {
            *o = -0.1 * ct * self.c[i] * xs[i] * cxv + vs[i];
        }
    }
    fn cross_xy(&self, x: &Vector, y: &Vector, v: &Vector, _batch: Batch<'_>, out: &mut Vector) {
        let (xs, ys, vs) = (x.as_slice(), y.as_slice(), v.as_slice());
        let t = self.t(xs, ys);
        let (ct, st) = (t.cos(), t.sin());
        let cxv: f64 = (0..xs.len()).map(|i| self.c[i] * xs[i] * vs[i]).sum();
        for (i, o) in out.as_mut_slice().iter_mut().enumerate() {
            *o = -0.1 * ct * self.c[i] * ys[i] * cxv
                - 0.1 * st * self.c[i] * vs[i]
                - self.d[i] * vs[i];
        }
    }
    fn cross_yx(&self, x: &Vector, y: &Vector, u: &Vector, _batch: Batch<'_>, out: &mut Vector) {
        let (xs, ys, us) = (x.as_slice(), y.as_slice(), u.as_slice());
        let t = self.t(xs, ys);
        let (ct, st) = (t.cos(), t.sin());
        let cyu: f64 = (0..xs.len()).map(|i| self.c[i] * ys[i] * us[i]).sum();
        for (i, o) in out.as_mut_slice().iter_mut().enumerate() {
            *o = -0.1 * ct * self.c[i] * xs[i] * cyu
                - 0.1 * st * self.c[i] * us[i]
                - self.d[i] * us[i];
        }
    }
}

impl LancbioSyntheticConfig {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        check_at_least("dim", self.dim, 1)?;
        if self.dim > 5_000 {
            return Err(Error::config(
                "dim",
                format!(
                    "G is stored dense ({0} x {0}); dim above 5000 is refused",
                    self.dim
                ),
            ));
        }
        check_positive("kappa", self.kappa)?;
        if self.kappa < 1.0 {
            return Err(Error::config("kappa", "must be >= 1"));
        }
        crate::core::error::check_in_range("gamma", self.gamma, 0.0, 0.999)?;
        self.reference.validate()
    }

    /// Draws the problem.
    pub fn build(&self) -> Result<Problem> {
        self.validate()?;
        let n = self.dim;
        let mut rng = rng_from_seed(self.seed, 51);
        let c: Vec<f64> = (0..n).map(|_| -5.0 + 10.0 * uniform01(&mut rng)).collect();
        let d: Vec<f64> = (0..n).map(|_| 0.1 + uniform01(&mut rng)).collect();
        let h: Vec<f64> = (0..n).map(|_| self.gamma * uniform01(&mut rng)).collect();
        let gauss = Matrix::from_fn(n, n, |_, _| standard_normal(&mut rng));
        let q = gauss.qr().compute_Q();
        let eig: Vec<f64> = (0..n)
            .map(|i| {
                if n == 1 {
                    1.0
                } else {
                    1.0 + (self.kappa - 1.0) * i as f64 / (n - 1) as f64
                }
            })
            .collect();
        let qd = Matrix::from_fn(n, n, |i, j| q[(i, j)] * eig[j]);
        let gm = &qd * q.transpose();
        // Symmetrise exactly.
        let g: Vec<f64> = (0..n * n)
            .map(|k| {
                let (i, j) = (k / n, k % n);
                0.5 * (gm[(i, j)] + gm[(j, i)])
            })
            .collect();
        let inner = Arc::new(LancbioInner {
            gamma: self.gamma,
            h,
            g,
        });
        let outer = Arc::new(LancbioOuter { c, d });
        let mut problem = Problem::from_arcs("lancbio_synthetic", outer.clone(), inner.clone())?;
        if self.reference.enabled {
            problem = problem.with_reference(NewtonReference::new(
                outer,
                inner,
                Vector::zeros(n),
                self.reference,
            ));
        }
        Ok(problem)
    }
}
