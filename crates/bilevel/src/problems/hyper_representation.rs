//! # Hyper-representation with a ridge head (algorithms.md §4.6, ESJ's notebook problems)
//!
//! The outer variable x parametrises a feature map φₓ : ℝᵖ → ℝᵈ, the inner variable y = w ∈ ℝᵈ
//! is a ridge-regression head on top of it:
//!
//! $$ g(x, w) = \frac1{2n}\sum_{i \le n} (\varphi_x(a_i)^\top w - b_i)^2 + \frac{\rho}{2}\lVert w\rVert^2,
//!    \qquad f(x, w) = \frac1{2n}\sum_{i \le n} (\varphi_x(a'_i)^\top w - b'_i)^2. $$
//!
//! - `linear`: φ(a) = Hᵀa with x = H ∈ ℝ^{p×d} (row-major). The notebook's sizes are the
//!   defaults: p = 64, d = 128, n = 500, ρ = 0.1.
//! - `two_layer_sigmoid`: φ(a) = σ(A₂ᵀ σ(A₁ᵀ a)) with x = (A₁ ∈ ℝ^{p×q}, A₂ ∈ ℝ^{q×d}), both
//!   row-major, A₁ first. The notebook used p = 256, q = 512, d = 256, n = 5000 and ρ = 1e-3;
//!   those sizes cost ≈ 1.3 GFLOP per full pass, so the defaults here are smaller (set `p`,
//!   `q`, `d`, `n` and `ridge` for the paper's).
//!
//! Data [derived: the notebook's scaling is not recorded]: aᵢ ~ N(0, Iₚ) for the inner set and
//! an independent outer set of the same size, targets bᵢ = φ_true(aᵢ)ᵀw_true + 0.1 εᵢ with a
//! "true" representation drawn like the start (entries N(0, 1/fan-in)) and w_true ~ N(0, I/d),
//! so targets are O(1). x₀ is an independent draw of the same law; w₀ = 0.
//!
//! Oracles are exact: ∇ₓ by backpropagation through the map, ∇²ₓᵧg·v by backpropagating
//! ∂/∂φ [(φᵀw − b)(φᵀv)] = (φᵀv) w + (φᵀw − b) v, and ∇²ᵧₓg·u by forward-mode differentiation
//! of φ along u. The inner problem is a ridge regression (quadratic in w), solved exactly by the
//! Newton-CG reference. Task metric: `test_loss` (½ mean squared error on a third, fresh set).
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::common::{
    NewtonReference, ReferenceConfig, check_batch, for_each_sample, sigmoid, with_scratch,
};
use crate::core::error::{Error, Result, check_at_least, check_non_negative};
use crate::core::linalg::{Rng, dot, rng_from_seed, standard_normal};
use crate::core::{Batch, Objective, Problem, TaskMetrics, Vector, VectorExt};

/// The representation family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Representation {
    /// φ(a) = Hᵀa.
    #[default]
    Linear,
    /// φ(a) = σ(A₂ᵀ σ(A₁ᵀ a)).
    TwoLayerSigmoid,
}

/// Configuration of [`hyper_representation`](self).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HyperRepresentationConfig {
    /// The feature map.
    pub representation: Representation,
    /// p, input dimension.
    pub p: usize,
    /// q, hidden width (two-layer only).
    pub q: usize,
    /// d, representation dimension (= dim y).
    pub d: usize,
    /// n, samples in each of the inner and outer sets.
    pub n: usize,
    /// ρ, the ridge strength of the head.
    pub ridge: f64,
    /// Standard deviation of the target noise.
    pub noise: f64,
    /// Seed of the data and the start.
    pub seed: u64,
    /// The exact reference.
    pub reference: ReferenceConfig,
}

impl Default for HyperRepresentationConfig {
    fn default() -> Self {
        Self {
            representation: Representation::Linear,
            p: 64,
            q: 32,
            d: 128,
            n: 500,
            ridge: 0.1,
            noise: 0.1,
            seed: 0,
            reference: ReferenceConfig::default(),
        }
    }
}

/// The feature map's shape.
#[derive(Clone, Copy, Debug)]
struct Net {
    kind: Representation,
    p: usize,
    q: usize,
    d: usize,
}

impl Net {
    fn dim_x(&self) -> usize {
        match self.kind {
            Representation::Linear => self.p * self.d,
            Representation::TwoLayerSigmoid => self.p * self.q + self.q * self.d,
        }
    }
    fn scratch_len(&self) -> usize {
        4 * self.d + 3 * self.q
    }
    /// φ(a) into `phi`, the hidden layer into `h1` (two-layer).
    fn forward(&self, x: &[f64], a: &[f64], h1: &mut [f64], phi: &mut [f64]) {
        let (p, q, d) = (self.p, self.q, self.d);
        match self.kind {
            Representation::Linear => {
                phi.fill(0.0);
                for (k, &ak) in a.iter().enumerate() {
                    crate::core::linalg::axpy(ak, &x[k * d..(k + 1) * d], phi);
                }
            }
            Representation::TwoLayerSigmoid => {
                let (a1, a2) = x.split_at(p * q);
                h1.fill(0.0);
                for (k, &ak) in a.iter().enumerate() {
                    crate::core::linalg::axpy(ak, &a1[k * q..(k + 1) * q], h1);
                }
                for v in h1.iter_mut() {
                    *v = sigmoid(*v);
                }
                phi.fill(0.0);
                for (j, &hj) in h1.iter().enumerate() {
                    crate::core::linalg::axpy(hj, &a2[j * d..(j + 1) * d], phi);
                }
                for v in phi.iter_mut() {
                    *v = sigmoid(*v);
                }
            }
        }
    }
    /// grad ← grad + α ∂(sᵀφ(a))/∂x. Uses `tmp` (length ≥ d + q) as scratch; `s` is kept.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        x: &[f64],
        a: &[f64],
        h1: &[f64],
        phi: &[f64],
        s: &[f64],
        alpha: f64,
        tmp: &mut [f64],
        grad: &mut [f64],
    ) {
        let (p, q, d) = (self.p, self.q, self.d);
        match self.kind {
            Representation::Linear => {
                for (k, &ak) in a.iter().enumerate() {
                    crate::core::linalg::axpy(alpha * ak, s, &mut grad[k * d..(k + 1) * d]);
                }
            }
            Representation::TwoLayerSigmoid => {
                let a2 = &x[p * q..];
                let (delta2, rest) = tmp.split_at_mut(d);
                let delta1 = &mut rest[..q];
                for k in 0..d {
                    delta2[k] = s[k] * phi[k] * (1.0 - phi[k]);
                }
                let (g1, g2) = grad.split_at_mut(p * q);
                for (j, &hj) in h1.iter().enumerate() {
                    crate::core::linalg::axpy(alpha * hj, delta2, &mut g2[j * d..(j + 1) * d]);
                    delta1[j] = dot(&a2[j * d..(j + 1) * d], delta2) * hj * (1.0 - hj);
                }
                for (k, &ak) in a.iter().enumerate() {
                    crate::core::linalg::axpy(alpha * ak, delta1, &mut g1[k * q..(k + 1) * q]);
                }
            }
        }
    }
    /// φ̇ = ∂φ(a)/∂x · u into `dphi`; `tmp` (length ≥ q) is scratch.
    #[allow(clippy::too_many_arguments)]
    fn jvp(
        &self,
        x: &[f64],
        u: &[f64],
        a: &[f64],
        h1: &[f64],
        phi: &[f64],
        tmp: &mut [f64],
        dphi: &mut [f64],
    ) {
        let (p, q, d) = (self.p, self.q, self.d);
        match self.kind {
            Representation::Linear => self.forward(u, a, tmp, dphi),
            Representation::TwoLayerSigmoid => {
                let (u1, u2) = u.split_at(p * q);
                let a2 = &x[p * q..];
                let dh1 = &mut tmp[..q];
                dh1.fill(0.0);
                for (k, &ak) in a.iter().enumerate() {
                    crate::core::linalg::axpy(ak, &u1[k * q..(k + 1) * q], dh1);
                }
                for (v, &hj) in dh1.iter_mut().zip(h1) {
                    *v *= hj * (1.0 - hj);
                }
                dphi.fill(0.0);
                for j in 0..q {
                    crate::core::linalg::axpy(h1[j], &u2[j * d..(j + 1) * d], dphi);
                    crate::core::linalg::axpy(dh1[j], &a2[j * d..(j + 1) * d], dphi);
                }
                for (v, &f) in dphi.iter_mut().zip(phi) {
                    *v *= f * (1.0 - f);
                }
            }
        }
    }
    fn draw(&self, rng: &mut Rng) -> Vec<f64> {
        let (p, q, d) = (self.p, self.q, self.d);
        match self.kind {
            Representation::Linear => {
                let s = 1.0 / (p as f64).sqrt();
                (0..p * d).map(|_| s * standard_normal(rng)).collect()
            }
            Representation::TwoLayerSigmoid => {
                let (s1, s2) = (1.0 / (p as f64).sqrt(), 1.0 / (q as f64).sqrt());
                let mut out: Vec<f64> = (0..p * q).map(|_| s1 * standard_normal(rng)).collect();
                out.extend((0..q * d).map(|_| s2 * standard_normal(rng)));
                out
            }
        }
    }
}

/// Squared loss of a ridge head on learned features (g with ρ > 0, f with ρ = 0).
pub struct HyperRepObjective {
    net: Net,
    /// n × p inputs, row-major.
    inputs: Vec<f64>,
    targets: Vec<f64>,
    ridge: f64,
}

impl HyperRepObjective {
    fn n(&self) -> usize {
        self.targets.len()
    }
    fn input(&self, i: usize) -> &[f64] {
        &self.inputs[i * self.net.p..(i + 1) * self.net.p]
    }
    /// Runs `f(i, a, h1, φ, rest)` for each sample with the forward pass done.
    fn each(
        &self,
        x: &[f64],
        batch: Batch<'_>,
        mut f: impl FnMut(usize, &[f64], &[f64], &[f64], &mut [f64]),
    ) -> f64 {
        let (q, d) = (self.net.q, self.net.d);
        with_scratch(self.net.scratch_len(), |buf| {
            let (h1, rest) = buf.split_at_mut(q);
            let (phi, rest) = rest.split_at_mut(d);
            for_each_sample(batch, self.n(), |i| {
                let a = self.input(i);
                self.net.forward(x, a, h1, phi);
                f(i, a, h1, phi, rest);
            })
        })
    }
}

impl Objective for HyperRepObjective {
    fn dims(&self) -> (usize, usize) {
        (self.net.dim_x(), self.net.d)
    }
    fn n_samples(&self) -> usize {
        self.n()
    }
    fn value(&self, x: &Vector, y: &Vector, batch: Batch<'_>) -> f64 {
        check_batch(batch, self.n(), "hyper_representation");
        let w = y.as_slice();
        let mut total = 0.0;
        let inv = self.each(x.as_slice(), batch, |i, _, _, phi, _| {
            let r = dot(phi, w) - self.targets[i];
            total += 0.5 * r * r;
        });
        total * inv + 0.5 * self.ridge * y.norm_sq()
    }
    fn grad_x(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        check_batch(batch, self.n(), "hyper_representation");
        let (xs, w) = (x.as_slice(), y.as_slice());
        let o = out.as_mut_slice();
        o.fill(0.0);
        let inv = 1.0 / batch.len(self.n()).max(1) as f64;
        let d = self.net.d;
        self.each(xs, batch, |i, a, h1, phi, rest| {
            let r = dot(phi, w) - self.targets[i];
            let (s, tmp) = rest.split_at_mut(d);
            for (sk, &wk) in s.iter_mut().zip(w) {
                *sk = r * wk;
            }
            self.net.backward(xs, a, h1, phi, s, inv, tmp, o);
        });
    }
    fn grad_y(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        check_batch(batch, self.n(), "hyper_representation");
        let w = y.as_slice();
        let o = out.as_mut_slice();
        o.fill(0.0);
        let inv = 1.0 / batch.len(self.n()).max(1) as f64;
        self.each(x.as_slice(), batch, |i, _, _, phi, _| {
            let r = dot(phi, w) - self.targets[i];
            crate::core::linalg::axpy(r * inv, phi, o);
        });
        crate::core::linalg::axpy(self.ridge, w, o);
    }
    fn hvp_yy(&self, x: &Vector, _y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        check_batch(batch, self.n(), "hyper_representation");
        let vs = v.as_slice();
        let o = out.as_mut_slice();
        o.fill(0.0);
        let inv = 1.0 / batch.len(self.n()).max(1) as f64;
        self.each(x.as_slice(), batch, |_, _, _, phi, _| {
            crate::core::linalg::axpy(dot(phi, vs) * inv, phi, o);
        });
        crate::core::linalg::axpy(self.ridge, vs, o);
    }
    fn cross_xy(&self, x: &Vector, y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        check_batch(batch, self.n(), "hyper_representation");
        let (xs, w, vs) = (x.as_slice(), y.as_slice(), v.as_slice());
        let o = out.as_mut_slice();
        o.fill(0.0);
        let inv = 1.0 / batch.len(self.n()).max(1) as f64;
        let d = self.net.d;
        self.each(xs, batch, |i, a, h1, phi, rest| {
            let r = dot(phi, w) - self.targets[i];
            let pv = dot(phi, vs);
            let (s, tmp) = rest.split_at_mut(d);
            for k in 0..d {
                s[k] = pv * w[k] + r * vs[k];
            }
            self.net.backward(xs, a, h1, phi, s, inv, tmp, o);
        });
    }
    fn cross_yx(&self, x: &Vector, y: &Vector, u: &Vector, batch: Batch<'_>, out: &mut Vector) {
        check_batch(batch, self.n(), "hyper_representation");
        let (xs, w, us) = (x.as_slice(), y.as_slice(), u.as_slice());
        let o = out.as_mut_slice();
        o.fill(0.0);
        let inv = 1.0 / batch.len(self.n()).max(1) as f64;
        let d = self.net.d;
        self.each(xs, batch, |i, a, h1, phi, rest| {
            let r = dot(phi, w) - self.targets[i];
            let (dphi, tmp) = rest.split_at_mut(d);
            self.net.jvp(xs, us, a, h1, phi, tmp, dphi);
            let dw = dot(dphi, w);
            crate::core::linalg::axpy(dw * inv, phi, o);
            crate::core::linalg::axpy(r * inv, dphi, o);
        });
    }
}

/// `test_loss`: ½ mean squared error of the current (x, w) on a fresh test set.
struct TestLoss(HyperRepObjective);

impl TaskMetrics for TestLoss {
    fn evaluate(&self, x: &Vector, y: &Vector) -> Vec<(String, f64)> {
        vec![("test_loss".into(), self.0.value(x, y, Batch::Full))]
    }
}

impl HyperRepresentationConfig {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        check_at_least("p", self.p, 1)?;
        check_at_least("d", self.d, 1)?;
        check_at_least("n", self.n, 1)?;
        if self.representation == Representation::TwoLayerSigmoid {
            check_at_least("q", self.q, 1)?;
        }
        check_non_negative("noise", self.noise)?;
        if !(self.ridge.is_finite() && self.ridge > 0.0) {
            return Err(Error::config(
                "ridge",
                "must be > 0 (the inner problem must be strongly convex)",
            ));
        }
        self.reference.validate()
    }

    /// Draws the data and builds the problem.
    pub fn build(&self) -> Result<Problem> {
        self.validate()?;
        let net = Net {
            kind: self.representation,
            p: self.p,
            q: self.q,
            d: self.d,
        };
        let mut rng = rng_from_seed(self.seed, 61);
        let x_true = net.draw(&mut rng);
        let w_true: Vec<f64> = (0..self.d)
            .map(|_| standard_normal(&mut rng) / (self.d as f64).sqrt())
            .collect();
        let mut make = |ridge: f64| {
            let inputs: Vec<f64> = (0..self.n * self.p)
                .map(|_| standard_normal(&mut rng))
                .collect();
            let mut obj = HyperRepObjective {
                net,
                inputs,
                targets: vec![0.0; self.n],
                ridge,
            };
            let mut h1 = vec![0.0; self.q];
            let mut phi = vec![0.0; self.d];
            for i in 0..self.n {
                net.forward(&x_true, obj.input(i), &mut h1, &mut phi);
                obj.targets[i] = dot(&phi, &w_true) + self.noise * standard_normal(&mut rng);
            }
            obj
        };
        let g = Arc::new(make(self.ridge));
        let f = Arc::new(make(0.0));
        let test = make(0.0);
        let x0 = net.draw(&mut rng_from_seed(self.seed, 62));
        let dim_x = net.dim_x();
        let mut problem = Problem::from_arcs("hyper_representation", f.clone(), g.clone())?
            .with_start(Vector::from_fn(dim_x, |i| x0[i]), Vector::zeros(self.d))?
            .with_task_metrics(TestLoss(test));
        if self.reference.enabled {
            problem = problem.with_reference(NewtonReference::new(
                f,
                g,
                Vector::zeros(self.d),
                self.reference,
            ));
        }
        Ok(problem)
    }
}
