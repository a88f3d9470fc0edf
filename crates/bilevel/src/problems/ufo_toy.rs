//! # The UFO-BLO counter-example: first-order MAML stalls at a non-stationary point
//!
//! After V. Likhosherstov, X. Song, K. Choromanski, J. Davis, A. Weller, *UFO-BLO: Unbiased
//! First-Order Bilevel Optimization* (arXiv:2006.03631), toy example (algorithms.md §7.5). The
//! construction of b₂ and A below is our own derivation (the paper's text was not available).
//!
//! Two one-dimensional tasks (φ, θ ∈ ℝ), each with the same loss for its inner (support) and
//! outer (query) problem:
//!
//! $$ h_j(\theta) = \psi_j(|\theta - c_j|), \quad c_j = b_j / a_j, \qquad
//!    \psi_j(z) = \begin{cases} a_j z^2/2 & z \le A \cr
//!    a_j A^2/2 + a_j A t + a_j t^2/2 - a_j t^3/6 & z = A + t,\ 0 < t \le 1 \cr
//!    a_j A^2/2 + a_j A + a_j/3 + a_j (A + \tfrac12)(z - A - 1) & z > A + 1 \end{cases} $$
//!
//! The cubic coefficient −a/6 is the one that makes ψ C² at both joins: ψ'' = a on [0, A],
//! a(1 − t) on the transition, 0 on the linear tail, so ψ is convex with ψ'' ∈ [0, a], its
//! slope saturates at a(A + ½) (bounded gradients, as SGD with step 10/(k+1) needs) and
//! ψ'(z) ≤ a z. On the quadratic zone a z²/2 = a θ²/2 − bθ + b²/(2a): the usual quadratic task.
//!
//! The problem is unrolled with r = 10 steps of size α = 0.1:
//! M(φ) = ½ Σⱼ hⱼ(θ_r^j(φ)), θ₀ = φ, θ_{k+1} = θ_k − α hⱼ'(θ_k).
//!
//! ## Derivation of b₂ and A (closed form)
//! Let ρⱼ = 1 − α aⱼ ∈ (0, 1). If |φ − cⱼ| ≤ A the inner iterates stay in the quadratic zone and
//! θ_k − cⱼ = ρⱼᵏ (φ − cⱼ). Hence, on that zone,
//! - first-order (FOM) meta-gradient: g_FO,j(φ) = hⱼ'(θ_r) = wⱼ (φ − cⱼ), wⱼ = aⱼ ρⱼʳ;
//! - exact meta-gradient: ∇Mⱼ(φ) = ρⱼʳ hⱼ'(θ_r) = eⱼ (φ − cⱼ), eⱼ = aⱼ ρⱼ²ʳ.
//!
//! Choose A ≥ |c₂ − c₁|: then the whole segment [c₁, c₂] lies in both quadratic zones. FOM's
//! fixed point (the zero of ½Σ g_FO,j) is φ_FO = (w₁c₁ + w₂c₂)/(w₁ + w₂) and the stationary point
//! of M is φ* = (e₁c₁ + e₂c₂)/(e₁ + e₂), both in [c₁, c₂]. At φ_FO
//!
//! $$ \nabla M(\phi_{FO}) = \tfrac12 (c_2 - c_1)\thinspace \frac{e_1 w_2 - e_2 w_1}{w_1 + w_2}, \qquad
//!    e_1 w_2 - e_2 w_1 = a_1 a_2 \rho_1^r \rho_2^r (\rho_1^r - \rho_2^r), $$
//!
//! non-zero whenever a₁ ≠ a₂ and c₂ ≠ c₁. Prescribing the stall gradient D = ∇M(φ_FO)
//! (`stall_gradient`, default 0.1) gives the closed form
//!
//! $$ c_2 = c_1 + \frac{2D\thinspace (w_1 + w_2)}{e_1 w_2 - e_2 w_1}, \qquad b_2 = a_2 c_2, \qquad
//!    A = |c_2 - c_1|. $$
//!
//! Uniqueness: outside [c₁, c₂] both tasks pull the same way (GD never overshoots cⱼ since
//! α ψ'(z) ≤ α a z < z, ψ' > 0 for z > 0, and every factor 1 − αψ'' of the product is > 0), so
//! φ_FO is the only zero of the FOM field and φ* the only stationary point of M, and both fields
//! are affine with positive slopes ½(w₁ + w₂) and ½(e₁ + e₂) on [c₁, c₂].
//!
//! With the defaults (a₁ = 0.5, b₁ = 0, a₂ = 1.5, r = 10, α = 0.1, D = 0.1):
//! ρ₁¹⁰ ≈ 0.5987, ρ₂¹⁰ ≈ 0.1969, b₂ ≈ 5.0216, A ≈ 3.3477, c₂ ≈ 3.3477, φ_FO ≈ 1.6624,
//! φ* ≈ 0.8199; FOM converges to φ_FO where |∇M| = 0.1, while the unbiased estimator converges
//! to φ*.
//!
//! The [`Reference`](crate::core::Reference) is exact: M and ∇M by forward-mode
//! differentiation of the unrolled loop ([`MetaReference`]), which on this problem is the
//! product formula ∇Mⱼ = Π_k (1 − α hⱼ''(θ_k)) hⱼ'(θ_r) evaluated left to right.
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::meta_reference::MetaReference;
use crate::core::error::{Error, Result, check_at_least, check_positive};
use crate::core::{Batch, Objective, Problem, UnrolledSpec, Vector, VectorExt};

/// Parameters of the toy counter-example (defaults: algorithms.md §7.5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UfoToyConfig {
    /// a₁: curvature of task 1.
    pub a1: f64,
    /// b₁: linear coefficient of task 1 (centre c₁ = b₁/a₁).
    pub b1: f64,
    /// a₂: curvature of task 2 (must differ from a₁).
    pub a2: f64,
    /// r: inner steps.
    pub steps: usize,
    /// α: inner step size (α·aⱼ < 1).
    pub lr: f64,
    /// D = ∇M(φ_FO): the meta-gradient at FOM's fixed point; b₂ and A follow by the closed form.
    pub stall_gradient: f64,
    /// The starting meta-parameter φ₀.
    pub x0: f64,
}

impl Default for UfoToyConfig {
    fn default() -> Self {
        Self {
            a1: 0.5,
            b1: 0.0,
            a2: 1.5,
            steps: 10,
            lr: 0.1,
            stall_gradient: 0.1,
            x0: -2.0,
        }
    }
}

/// The closed-form quantities of the toy (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UfoToyClosedForm {
    /// b₂.
    pub b2: f64,
    /// A: half-width of the quadratic zone.
    pub zone: f64,
    /// c₁ = b₁/a₁.
    pub c1: f64,
    /// c₂ = b₂/a₂.
    pub c2: f64,
    /// FOM's fixed point φ_FO.
    pub phi_fo: f64,
    /// The stationary point φ* of M.
    pub phi_star: f64,
    /// Slope of the FOM field ½Σ g_FO,j on [c₁, c₂]: ½(w₁ + w₂).
    pub fo_slope: f64,
    /// Slope of ∇M on [c₁, c₂] (the curvature of M there): ½(e₁ + e₂).
    pub meta_slope: f64,
}

impl UfoToyConfig {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        check_positive("a1", self.a1)?;
        check_positive("a2", self.a2)?;
        check_positive("lr", self.lr)?;
        check_at_least("steps", self.steps, 1)?;
        if !self.b1.is_finite() || !self.x0.is_finite() {
            return Err(Error::config("b1", "b1 and x0 must be finite"));
        }
        if !(self.stall_gradient.is_finite() && self.stall_gradient != 0.0) {
            return Err(Error::config(
                "stall_gradient",
                format!("must be finite and non-zero, got {}", self.stall_gradient),
            ));
        }
        for (field, a) in [("a1", self.a1), ("a2", self.a2)] {
            if self.lr * a >= 1.0 {
                return Err(Error::config(
                    field,
                    format!("lr * {field} must be < 1 (got {})", self.lr * a),
                ));
            }
        }
        if self.a1 == self.a2 {
            return Err(Error::config(
                "a2",
                "must differ from a1 (equal curvatures make FOM unbiased at its fixed point)",
            ));
        }
        let cf = self.closed_form();
        if !(cf.zone.is_finite() && cf.zone > 0.0) {
            return Err(Error::config(
                "stall_gradient",
                "the closed form gives a degenerate zone A (ρ₁ʳ ≈ ρ₂ʳ)",
            ));
        }
        Ok(())
    }

    /// b₂, A, φ_FO, φ* and the slopes, from the closed form of the module docs.
    pub fn closed_form(&self) -> UfoToyClosedForm {
        let r = self.steps as i32;
        let (rho1, rho2) = (
            (1.0 - self.lr * self.a1).powi(r),
            (1.0 - self.lr * self.a2).powi(r),
        );
        let (w1, w2) = (self.a1 * rho1, self.a2 * rho2);
        let (e1, e2) = (w1 * rho1, w2 * rho2);
        let c1 = self.b1 / self.a1;
        let c2 = c1 + 2.0 * self.stall_gradient * (w1 + w2) / (e1 * w2 - e2 * w1);
        UfoToyClosedForm {
            b2: self.a2 * c2,
            zone: (c2 - c1).abs(),
            c1,
            c2,
            phi_fo: (w1 * c1 + w2 * c2) / (w1 + w2),
            phi_star: (e1 * c1 + e2 * c2) / (e1 + e2),
            fo_slope: 0.5 * (w1 + w2),
            meta_slope: 0.5 * (e1 + e2),
        }
    }

    /// Builds the problem (dim x = dim y = 1, two tasks, f = g).
    pub fn build(&self) -> Result<Problem> {
        self.validate()?;
        let cf = self.closed_form();
        let tasks = Arc::new(ToyTasks {
            tasks: vec![(self.a1, cf.c1), (self.a2, cf.c2)],
            zone: cf.zone,
        });
        let f: Arc<dyn Objective> = tasks.clone();
        let g: Arc<dyn Objective> = tasks;
        let reference = MetaReference::new(f.clone(), g.clone(), self.steps, self.lr, None);
        Problem::from_arcs("ufo_toy", f, g)?
            .with_reference(reference)
            .with_unrolled(UnrolledSpec::new(self.steps, self.lr))
            .with_start(
                Vector::from_fn(1, |_| self.x0),
                Vector::from_fn(1, |_| self.x0),
            )
    }
}

/// The two piecewise tasks as one objective with one sample per task (depends on y only).
#[derive(Clone, Debug)]
pub struct ToyTasks {
    /// (aⱼ, cⱼ) per task.
    tasks: Vec<(f64, f64)>,
    /// A.
    zone: f64,
}

impl ToyTasks {
    /// ψ(z), ψ'(z), ψ''(z) for curvature `a` at z ≥ 0.
    pub fn psi(&self, a: f64, z: f64) -> (f64, f64, f64) {
        let big_a = self.zone;
        if z <= big_a {
            (0.5 * a * z * z, a * z, a)
        } else if z <= big_a + 1.0 {
            let t = z - big_a;
            (
                0.5 * a * big_a * big_a + a * big_a * t + 0.5 * a * t * t - a * t * t * t / 6.0,
                a * big_a + a * t - 0.5 * a * t * t,
                a * (1.0 - t),
            )
        } else {
            let slope = a * (big_a + 0.5);
            (
                0.5 * a * big_a * big_a + a * big_a + a / 3.0 + slope * (z - big_a - 1.0),
                slope,
                0.0,
            )
        }
    }

    /// (h(θ), h'(θ), h''(θ)) of task `j`.
    fn task(&self, j: usize, theta: f64) -> (f64, f64, f64) {
        let (a, c) = self.tasks[j];
        let d = theta - c;
        let (v, d1, d2) = self.psi(a, d.abs());
        (v, d.signum() * d1, d2)
    }

    /// The mean over the batch of (h, h', h'') at θ.
    fn mean(&self, theta: f64, batch: Batch<'_>) -> (f64, f64, f64) {
        let mut acc = (0.0, 0.0, 0.0);
        let mut add = |j: usize| {
            assert!(j < self.tasks.len(), "ufo_toy: task index {j} out of range");
            let (v, d1, d2) = self.task(j, theta);
            acc = (acc.0 + v, acc.1 + d1, acc.2 + d2);
        };
        let n = match batch {
            Batch::Full => {
                (0..self.tasks.len()).for_each(&mut add);
                self.tasks.len()
            }
            Batch::Indices(idx) => {
                assert!(!idx.is_empty(), "ufo_toy: empty batch");
                idx.iter().copied().for_each(&mut add);
                idx.len()
            }
        };
        let n = n as f64;
        (acc.0 / n, acc.1 / n, acc.2 / n)
    }
}

fn scalar(v: &Vector) -> f64 {
    v.as_slice()[0]
}

impl Objective for ToyTasks {
    fn dims(&self) -> (usize, usize) {
        (1, 1)
    }
    fn n_samples(&self) -> usize {
        self.tasks.len()
    }
    fn value(&self, _x: &Vector, y: &Vector, batch: Batch<'_>) -> f64 {
        self.mean(scalar(y), batch).0
    }
    fn grad_x(&self, _x: &Vector, _y: &Vector, _batch: Batch<'_>, out: &mut Vector) {
        out.set_zero();
    }
    fn grad_y(&self, _x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        out.as_mut_slice()[0] = self.mean(scalar(y), batch).1;
    }
    fn hvp_yy(&self, _x: &Vector, y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        out.as_mut_slice()[0] = self.mean(scalar(y), batch).2 * scalar(v);
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

    #[test]
    fn psi_is_c2_at_both_joins() {
        let toy = ToyTasks {
            tasks: vec![(1.5, 0.0)],
            zone: 2.0,
        };
        let eps = 1e-9;
        for z in [2.0, 3.0] {
            let (l, r) = (toy.psi(1.5, z - eps), toy.psi(1.5, z + eps));
            // Value, slope and curvature continuous up to O(eps · curvature) = O(1e-9).
            assert!((l.0 - r.0).abs() < 1e-7, "value jump at {z}");
            assert!((l.1 - r.1).abs() < 1e-7, "slope jump at {z}");
            assert!(
                (l.2 - r.2).abs() < 1e-7,
                "curvature jump at {z}: {l:?} {r:?}"
            );
        }
    }

    #[test]
    fn closed_form_matches_the_documented_numbers() {
        let cf = UfoToyConfig::default().closed_form();
        // The values printed in the module docs, to their 4 decimals.
        assert!((cf.b2 - 5.0216).abs() < 1e-4, "{cf:?}");
        assert!((cf.zone - 3.3477).abs() < 1e-4);
        assert!((cf.phi_fo - 1.6624).abs() < 1e-4);
        assert!((cf.phi_star - 0.8199).abs() < 1e-4);
    }
}
