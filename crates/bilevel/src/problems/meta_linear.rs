//! # Few-shot linear regression with a shared linear feature map (a meta-learning problem)
//!
//! A small, exactly differentiable meta-learning problem with a head/body split, for MAML,
//! FO-MAML, Reptile, UFO-BLO and ANIL (algorithms.md §7.1, §8.6, §9.8). The model maps an input
//! s ∈ ℝᵈ to wᵀB s: the **body** B ∈ ℝ^{k×d} is a linear feature map, the **head** w ∈ ℝᵏ a
//! linear read-out. The parameters are θ = (vec B, w) ∈ ℝ^{kd + k} (B row-major first, then w);
//! the head is the last k coordinates ([`UnrolledSpec::head`]).
//!
//! Task j has a support set (S_j, t_j) and a query set (Q_j, u_j) and the losses
//!
//! $$ l_j(\theta) = \frac{1}{2 n_s} \sum_i (w^\top B s_i - t_i)^2 + \frac{\lambda}{2}\Vert \theta\Vert ^2,
//!    \qquad L_j(\theta) = \text{the same on the query set}, $$
//!
//! g on task j is l_j (inner, support), f on task j is L_j (outer, query). The model is
//! bilinear, so l_j is non-convex in θ (and the meta-objective too); its gradient and
//! Hessian-vector products are exact closed forms: with pᵢ = B sᵢ, eᵢ = wᵀpᵢ − tᵢ and a direction
//! (V, v), ∂eᵢ = vᵀpᵢ + wᵀV sᵢ,
//! - ∇_w l = (1/n) Σ eᵢ pᵢ + λw, ∇_B l = (1/n) Σ eᵢ w sᵢᵀ + λB;
//! - (∇²l·(V, v))_w = (1/n) Σ (∂eᵢ pᵢ + eᵢ V sᵢ) + λv,
//!   (∇²l·(V, v))_B = (1/n) Σ (∂eᵢ w + eᵢ v) sᵢᵀ + λV.
//!
//! The objectives depend on y = θ only (x is ignored, ∇ₓ = 0, as the unrolled contract requires).
//!
//! ## Data (seeded)
//! A ground-truth body B* with N(0, 1/d) entries is shared by all tasks; task j draws its head
//! w*_j ~ N(0, I_k); inputs s ~ N(0, I_d) and targets wⱼ*ᵀB*s + σε, ε ~ N(0, 1). The start φ₀ has
//! N(0, 0.5²) entries (from the same seed).
//!
//! ## Reference
//! M(φ) = mean_j L_j(θ_r^j(φ)) for the problem's r and α, with θ_r^j the r-step GD adaptation on
//! l_j, and ∇M by forward-mode differentiation ([`MetaReference`]). `reference_adapts` selects
//! which inner loop defines M: all coordinates (MAML's objective, the default) or the head only
//! (ANIL's objective: the body is not adapted). Solvers adapt as their algorithm says, whatever
//! the reference measures.
//!
//! Instances where the biased first-order methods reach ∇M = 0: with `tasks = 1` and
//! `query_is_support = true`, FO-MAML's fixed points (∇l(θ_r) = 0) and Reptile's (θ_r = φ, i.e.
//! ∇l(φ) = 0 when α < 2/L, GD being a strict descent method away from stationary points) are
//! stationary points of M.
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::meta_reference::MetaReference;
use crate::core::error::{Error, Result, check_at_least, check_non_negative, check_positive};
use crate::core::linalg::{dot, normal_vector, rng_from_seed, standard_normal};
use crate::core::{Batch, HeadRange, Objective, Problem, UnrolledSpec, Vector, VectorExt};

/// Which inner loop defines the meta-objective M of the reference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Adapted {
    /// Every coordinate is adapted (MAML, FO-MAML, Reptile, UFO-BLO).
    #[default]
    All,
    /// Only the head is adapted (ANIL).
    Head,
}

/// Parameters of the few-shot linear regression problem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetaLinearConfig {
    /// d: input dimension.
    pub input_dim: usize,
    /// k: feature dimension (the head has k coordinates).
    pub feature_dim: usize,
    /// Number of tasks.
    pub tasks: usize,
    /// n_s: support examples per task.
    pub support: usize,
    /// n_q: query examples per task (ignored when `query_is_support`).
    pub query: usize,
    /// Use each task's support set as its query set (L_j = l_j).
    pub query_is_support: bool,
    /// σ: target noise.
    pub noise: f64,
    /// λ: ridge on θ in every task loss.
    pub ridge: f64,
    /// r: inner GD steps of the defining loop.
    pub steps: usize,
    /// α: inner step size.
    pub lr: f64,
    /// The inner loop whose M the reference measures.
    pub reference_adapts: Adapted,
    /// Seed of the data and of the start.
    pub seed: u64,
}

impl Default for MetaLinearConfig {
    fn default() -> Self {
        Self {
            input_dim: 4,
            feature_dim: 2,
            tasks: 8,
            support: 10,
            query: 10,
            query_is_support: false,
            noise: 0.1,
            ridge: 0.01,
            steps: 5,
            lr: 0.1,
            reference_adapts: Adapted::All,
            seed: 0,
        }
    }
}

impl MetaLinearConfig {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        check_at_least("input_dim", self.input_dim, 1)?;
        check_at_least("feature_dim", self.feature_dim, 1)?;
        check_at_least("tasks", self.tasks, 1)?;
        check_at_least("support", self.support, 1)?;
        if !self.query_is_support {
            check_at_least("query", self.query, 1)?;
        }
        check_non_negative("noise", self.noise)?;
        check_non_negative("ridge", self.ridge)?;
        check_positive("lr", self.lr)?;
        Ok(())
    }

    /// The number of parameters k·d + k.
    pub fn dim(&self) -> usize {
        self.feature_dim * self.input_dim + self.feature_dim
    }

    /// The head coordinates kd..kd + k.
    pub fn head(&self) -> HeadRange {
        let start = self.feature_dim * self.input_dim;
        HeadRange {
            start,
            end: start + self.feature_dim,
        }
    }

    /// Draws the tasks and builds the problem.
    pub fn build(&self) -> Result<Problem> {
        self.validate()?;
        let (d, k) = (self.input_dim, self.feature_dim);
        let mut rng = rng_from_seed(self.seed, 0);
        let scale = 1.0 / (d as f64).sqrt();
        let body: Vec<f64> = (0..k * d)
            .map(|_| scale * standard_normal(&mut rng))
            .collect();
        let draw_set = |head: &[f64], n: usize, rng: &mut crate::core::Rng| {
            let mut inputs = Vec::with_capacity(n * d);
            let mut targets = Vec::with_capacity(n);
            for _ in 0..n {
                let s: Vec<f64> = (0..d).map(|_| standard_normal(rng)).collect();
                let clean: f64 = (0..k)
                    .map(|a| head[a] * dot(&body[a * d..(a + 1) * d], &s))
                    .sum();
                targets.push(clean + self.noise * standard_normal(rng));
                inputs.extend_from_slice(&s);
            }
            DataSet { inputs, targets }
        };
        let mut support = Vec::with_capacity(self.tasks);
        let mut query = Vec::with_capacity(self.tasks);
        for _ in 0..self.tasks {
            let head: Vec<f64> = (0..k).map(|_| standard_normal(&mut rng)).collect();
            let s = draw_set(&head, self.support, &mut rng);
            let q = if self.query_is_support {
                s.clone()
            } else {
                draw_set(&head, self.query, &mut rng)
            };
            support.push(s);
            query.push(q);
        }
        let mut start_rng = rng_from_seed(self.seed, 1);
        let mut x0 = normal_vector(&mut start_rng, self.dim());
        x0.scale(0.5);
        let make = |sets| -> Arc<dyn Objective> {
            Arc::new(LinearTasks {
                input_dim: d,
                feature_dim: k,
                ridge: self.ridge,
                sets,
            })
        };
        let (f, g) = (make(query), make(support));
        let adapted = match self.reference_adapts {
            Adapted::All => None,
            Adapted::Head => Some(self.head().range()),
        };
        let reference = MetaReference::new(f.clone(), g.clone(), self.steps, self.lr, adapted);
        Problem::from_arcs("meta_linear", f, g)?
            .with_reference(reference)
            .with_unrolled(UnrolledSpec::new(self.steps, self.lr).with_head(self.head()))
            .with_start(x0.clone(), x0)
            .map_err(|e| Error::config("meta_linear", e.to_string()))
    }
}

/// One task's examples: inputs row-major (n × d) and targets.
#[derive(Clone, Debug)]
struct DataSet {
    inputs: Vec<f64>,
    targets: Vec<f64>,
}

/// One level (support or query) of all tasks: one sample per task.
#[derive(Clone, Debug)]
pub struct LinearTasks {
    input_dim: usize,
    feature_dim: usize,
    ridge: f64,
    sets: Vec<DataSet>,
}

impl LinearTasks {
    /// The task indices of `batch` (each counted once per occurrence).
    fn for_each_task(&self, batch: Batch<'_>, mut visit: impl FnMut(&DataSet)) -> usize {
        match batch {
            Batch::Full => {
                self.sets.iter().for_each(&mut visit);
                self.sets.len()
            }
            Batch::Indices(idx) => {
                assert!(!idx.is_empty(), "meta_linear: empty batch");
                for &j in idx {
                    assert!(j < self.sets.len(), "meta_linear: task {j} out of range");
                    visit(&self.sets[j]);
                }
                idx.len()
            }
        }
    }

    /// (body B row-major, head w) views of θ.
    fn split<'a>(&self, theta: &'a [f64]) -> (&'a [f64], &'a [f64]) {
        theta.split_at(self.feature_dim * self.input_dim)
    }
}

impl Objective for LinearTasks {
    fn dims(&self) -> (usize, usize) {
        let n = self.feature_dim * self.input_dim + self.feature_dim;
        (n, n)
    }
    fn n_samples(&self) -> usize {
        self.sets.len()
    }
    fn value(&self, _x: &Vector, y: &Vector, batch: Batch<'_>) -> f64 {
        let (d, k) = (self.input_dim, self.feature_dim);
        let (body, head) = self.split(y.as_slice());
        let mut total = 0.0;
        let tasks = self.for_each_task(batch, |set| {
            let n = set.targets.len();
            let mut loss = 0.0;
            for (i, s) in set.inputs.chunks_exact(d).enumerate() {
                let pred: f64 = (0..k)
                    .map(|a| head[a] * dot(&body[a * d..(a + 1) * d], s))
                    .sum();
                let e = pred - set.targets[i];
                loss += e * e;
            }
            total += loss / (2.0 * n as f64);
        });
        total / tasks as f64 + 0.5 * self.ridge * y.norm_sq()
    }
    fn grad_x(&self, _x: &Vector, _y: &Vector, _batch: Batch<'_>, out: &mut Vector) {
        out.set_zero();
    }
    fn grad_y(&self, _x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        let (d, k) = (self.input_dim, self.feature_dim);
        let theta = y.as_slice();
        let (body, head) = self.split(theta);
        let o = out.as_mut_slice();
        o.fill(0.0);
        let tasks = self.for_each_task(batch, |set| {
            let n = set.targets.len() as f64;
            let (o_body, o_head) = o.split_at_mut(k * d);
            for (i, s) in set.inputs.chunks_exact(d).enumerate() {
                let pred: f64 = (0..k)
                    .map(|a| head[a] * dot(&body[a * d..(a + 1) * d], s))
                    .sum();
                let e = (pred - set.targets[i]) / n;
                for a in 0..k {
                    // ∇_w: e pᵢ ; ∇_B row a: e w_a sᵢ.
                    o_head[a] += e * dot(&body[a * d..(a + 1) * d], s);
                    crate::core::linalg::axpy(e * head[a], s, &mut o_body[a * d..(a + 1) * d]);
                }
            }
        });
        let inv = 1.0 / tasks as f64;
        for (oi, ti) in o.iter_mut().zip(theta) {
            *oi = *oi * inv + self.ridge * ti;
        }
    }
    fn hvp_yy(&self, _x: &Vector, y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        let (d, k) = (self.input_dim, self.feature_dim);
        let (body, head) = self.split(y.as_slice());
        let (v_body, v_head) = self.split(v.as_slice());
        let o = out.as_mut_slice();
        o.fill(0.0);
        let tasks = self.for_each_task(batch, |set| {
            let n = set.targets.len() as f64;
            let (o_body, o_head) = o.split_at_mut(k * d);
            for (i, s) in set.inputs.chunks_exact(d).enumerate() {
                let mut pred = 0.0;
                let mut de = 0.0;
                for a in 0..k {
                    let p = dot(&body[a * d..(a + 1) * d], s);
                    let vs = dot(&v_body[a * d..(a + 1) * d], s);
                    pred += head[a] * p;
                    // ∂e = vᵀp + wᵀV s.
                    de += v_head[a] * p + head[a] * vs;
                }
                let e = (pred - set.targets[i]) / n;
                let de = de / n;
                for a in 0..k {
                    let p = dot(&body[a * d..(a + 1) * d], s);
                    let vs = dot(&v_body[a * d..(a + 1) * d], s);
                    // (∇²l·(V, v))_w = ∂e p + e V s ; (…)_B row a = (∂e w_a + e v_a) s.
                    o_head[a] += de * p + e * vs;
                    crate::core::linalg::axpy(
                        de * head[a] + e * v_head[a],
                        s,
                        &mut o_body[a * d..(a + 1) * d],
                    );
                }
            }
        });
        let inv = 1.0 / tasks as f64;
        for (oi, vi) in o.iter_mut().zip(v.as_slice()) {
            *oi = *oi * inv + self.ridge * vi;
        }
    }
    fn cross_xy(&self, _x: &Vector, _y: &Vector, _v: &Vector, _b: Batch<'_>, out: &mut Vector) {
        out.set_zero();
    }
    fn cross_yx(&self, _x: &Vector, _y: &Vector, _u: &Vector, _b: Batch<'_>, out: &mut Vector) {
        out.set_zero();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::assert_objective_matches_fd;

    #[test]
    fn oracles_match_finite_differences() {
        let problem = MetaLinearConfig::default().build().unwrap();
        // Exact closed forms against central differences with step 1e-5: the error is
        // O(h²·third derivative) ≈ 1e-9 relative; 1e-6 leaves room for rounding.
        assert_objective_matches_fd(problem.g(), 3, 1e-6, 1);
        assert_objective_matches_fd(problem.f(), 3, 1e-6, 2);
    }

    #[test]
    fn head_is_the_last_k_coordinates() {
        let cfg = MetaLinearConfig::default();
        let problem = cfg.build().unwrap();
        let spec = problem.unrolled().unwrap();
        assert_eq!(spec.head, Some(HeadRange { start: 8, end: 10 }));
        assert_eq!(problem.dims(), (10, 10));
    }
}
