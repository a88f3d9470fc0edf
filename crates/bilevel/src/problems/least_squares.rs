//! # FSLA's synthetic least-squares bilevel problem (algorithms.md §2.5, §9.2)
//!
//! Outer: $f(y) = \frac{1}{m_1}\sum_i (a_i^\top y - b_i)^2 = \frac1{m_1}\Vert A y - b\Vert ^2$;
//! inner: $g(x, y) = \frac{1}{m_2}\sum_i (c_i^\top x + d_i^\top y - e_i)^2 = \frac1{m_2}\Vert C x + D y - e\Vert ^2$.
//!
//! A, C, D have i.i.d. U(0, 1) entries; b = A u + noise, e = C u₁ + D u₂ + noise (noise std 0.01).
//! The inner Hessian 2DᵀD/m₂ and the cross matrix 2DᵀC/m₂ are constant, so the hypergradient is
//! exact in closed form: y*(x) = −(DᵀD)⁻¹Dᵀ(Cx − e) and
//! ∇F(x) = −CᵀD(DᵀD)⁻¹ ∇ᵧf(y*), a good exact-hypergradient test. The paper sums squares; here
//! both levels are means over rows (the same minimisers, gradients scaled by 1/m), so that
//! minibatches of rows are unbiased estimates.
//!
//! The FSLA paper's sizes were not retrieved; the default follows the third-party reproduction
//! noted in algorithms.md (m₁ = m₂ = 10 000 rows, dim x = dim y = 5).
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use std::sync::Arc;

use faer::Side;
use faer::linalg::solvers::Solve;
use serde::{Deserialize, Serialize};

use crate::core::error::{Error, Result, check_at_least, check_non_negative};
use crate::core::linalg::{
    Matrix, Vector, VectorExt, axpy, dot, rng_from_seed, standard_normal, uniform01,
};
use crate::core::{Batch, Objective, Problem, Reference, ReferencePoint};

/// Parameters of the least-squares problem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeastSquaresConfig {
    /// Dimension of x (columns of C).
    pub dim_x: usize,
    /// Dimension of y (columns of A and D).
    pub dim_y: usize,
    /// m₁: rows of A (outer samples).
    pub n_outer: usize,
    /// m₂: rows of C and D (inner samples).
    pub n_inner: usize,
    /// Standard deviation of the noise on b and e.
    pub noise: f64,
    /// Seed of the draw.
    pub seed: u64,
}

impl Default for LeastSquaresConfig {
    fn default() -> Self {
        Self {
            dim_x: 5,
            dim_y: 5,
            n_outer: 10_000,
            n_inner: 10_000,
            noise: 0.01,
            seed: 0,
        }
    }
}

/// Rows of one level: (a_i or [c_i, d_i]) and targets.
#[derive(Clone, Debug)]
struct Rows {
    /// n × width, row-major.
    data: Vec<f64>,
    width: usize,
    targets: Vec<f64>,
}

impl Rows {
    fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.width..(i + 1) * self.width]
    }
    fn n(&self) -> usize {
        self.targets.len()
    }
}

/// The outer objective f(y) = mean (a_iᵀy − b_i)² (independent of x).
pub struct LeastSquaresOuter {
    dim_x: usize,
    rows: Rows,
}

/// The inner objective g(x, y) = mean (c_iᵀx + d_iᵀy − e_i)².
pub struct LeastSquaresInner {
    dim_x: usize,
    dim_y: usize,
    /// Each row is [c_i, d_i].
    rows: Rows,
}

fn for_batch(n: usize, batch: Batch<'_>, mut each: impl FnMut(usize)) -> f64 {
    match batch {
        Batch::Full => {
            (0..n).for_each(&mut each);
            1.0 / n as f64
        }
        Batch::Indices(idx) => {
            assert!(!idx.is_empty(), "least squares: empty minibatch");
            for &i in idx {
                assert!(
                    i < n,
                    "least squares: sample index {i} out of range (n = {n})"
                );
                each(i);
            }
            1.0 / idx.len() as f64
        }
    }
}

impl Objective for LeastSquaresOuter {
    fn dims(&self) -> (usize, usize) {
        (self.dim_x, self.rows.width)
    }
    fn n_samples(&self) -> usize {
        self.rows.n()
    }
    fn value(&self, _x: &Vector, y: &Vector, batch: Batch<'_>) -> f64 {
        let mut total = 0.0;
        let scale = for_batch(self.rows.n(), batch, |i| {
            let r = dot(self.rows.row(i), y.as_slice()) - self.rows.targets[i];
            total += r * r;
        });
        total * scale
    }
    fn grad_x(&self, _x: &Vector, _y: &Vector, _batch: Batch<'_>, out: &mut Vector) {
        out.set_zero();
    }
    fn grad_y(&self, _x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        let o = out.as_mut_slice();
        o.fill(0.0);
        let scale = for_batch(self.rows.n(), batch, |i| {
            let a = self.rows.row(i);
            let r = dot(a, y.as_slice()) - self.rows.targets[i];
            axpy(2.0 * r, a, o);
        });
        out.scale(scale);
    }
    fn hvp_yy(&self, _x: &Vector, _y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        let o = out.as_mut_slice();
        o.fill(0.0);
        let scale = for_batch(self.rows.n(), batch, |i| {
            let a = self.rows.row(i);
            axpy(2.0 * dot(a, v.as_slice()), a, o);
        });
        out.scale(scale);
    }
    fn cross_xy(&self, _x: &Vector, _y: &Vector, _v: &Vector, _b: Batch<'_>, out: &mut Vector) {
        out.set_zero();
    }
    fn cross_yx(&self, _x: &Vector, _y: &Vector, _u: &Vector, _b: Batch<'_>, out: &mut Vector) {
        out.set_zero();
    }
}

impl LeastSquaresInner {
    fn residual(&self, i: usize, x: &[f64], y: &[f64]) -> f64 {
        let row = self.rows.row(i);
        dot(&row[..self.dim_x], x) + dot(&row[self.dim_x..], y) - self.rows.targets[i]
    }
}

impl Objective for LeastSquaresInner {
    fn dims(&self) -> (usize, usize) {
        (self.dim_x, self.dim_y)
    }
    fn n_samples(&self) -> usize {
        self.rows.n()
    }
    fn value(&self, x: &Vector, y: &Vector, batch: Batch<'_>) -> f64 {
        let mut total = 0.0;
        let scale = for_batch(self.rows.n(), batch, |i| {
            let r = self.residual(i, x.as_slice(), y.as_slice());
            total += r * r;
        });
        total * scale
    }
    fn grad_x(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        let o = out.as_mut_slice();
        o.fill(0.0);
        let scale = for_batch(self.rows.n(), batch, |i| {
            let r = self.residual(i, x.as_slice(), y.as_slice());
            axpy(2.0 * r, &self.rows.row(i)[..self.dim_x], o);
        });
        out.scale(scale);
    }
    fn grad_y(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        let o = out.as_mut_slice();
        o.fill(0.0);
        let scale = for_batch(self.rows.n(), batch, |i| {
            let r = self.residual(i, x.as_slice(), y.as_slice());
            axpy(2.0 * r, &self.rows.row(i)[self.dim_x..], o);
        });
        out.scale(scale);
    }
    fn grad_xy(&self, x: &Vector, y: &Vector, batch: Batch<'_>, gx: &mut Vector, gy: &mut Vector) {
        let (ox, oy) = (gx.as_mut_slice(), gy.as_mut_slice());
        ox.fill(0.0);
        oy.fill(0.0);
        let scale = for_batch(self.rows.n(), batch, |i| {
            let r = self.residual(i, x.as_slice(), y.as_slice());
            let row = self.rows.row(i);
            axpy(2.0 * r, &row[..self.dim_x], ox);
            axpy(2.0 * r, &row[self.dim_x..], oy);
        });
        gx.scale(scale);
        gy.scale(scale);
    }
    fn hvp_yy(&self, _x: &Vector, _y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        let o = out.as_mut_slice();
        o.fill(0.0);
        let scale = for_batch(self.rows.n(), batch, |i| {
            let d = &self.rows.row(i)[self.dim_x..];
            axpy(2.0 * dot(d, v.as_slice()), d, o);
        });
        out.scale(scale);
    }
    fn cross_xy(&self, _x: &Vector, _y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        // ∇ₓ⟨∇ᵧg, v⟩ = mean 2 (d_iᵀv) c_i
        let o = out.as_mut_slice();
        o.fill(0.0);
        let scale = for_batch(self.rows.n(), batch, |i| {
            let row = self.rows.row(i);
            axpy(
                2.0 * dot(&row[self.dim_x..], v.as_slice()),
                &row[..self.dim_x],
                o,
            );
        });
        out.scale(scale);
    }
    fn cross_yx(&self, _x: &Vector, _y: &Vector, u: &Vector, batch: Batch<'_>, out: &mut Vector) {
        // ∇ᵧ⟨∇ₓg, u⟩ = mean 2 (c_iᵀu) d_i
        let o = out.as_mut_slice();
        o.fill(0.0);
        let scale = for_batch(self.rows.n(), batch, |i| {
            let row = self.rows.row(i);
            axpy(
                2.0 * dot(&row[..self.dim_x], u.as_slice()),
                &row[self.dim_x..],
                o,
            );
        });
        out.scale(scale);
    }
}

/// Closed-form reference: the inner problem is an ordinary least-squares fit in y.
pub struct LeastSquaresReference {
    outer: Arc<LeastSquaresOuter>,
    /// Cholesky factor of DᵀD/m₂.
    dtd: faer::linalg::solvers::Llt<f64>,
    /// DᵀC/m₂ (dim y × dim x).
    dtc: Matrix,
    /// Dᵀe/m₂.
    dte: Vector,
}

impl LeastSquaresReference {
    fn new(outer: Arc<LeastSquaresOuter>, inner: &LeastSquaresInner) -> Result<Self> {
        let (dx, dy) = (inner.dim_x, inner.dim_y);
        let n = inner.rows.n() as f64;
        let mut dtd = Matrix::zeros(dy, dy);
        let mut dtc = Matrix::zeros(dy, dx);
        let mut dte = Vector::zeros(dy);
        for i in 0..inner.rows.n() {
            let row = inner.rows.row(i);
            let (c, d) = (&row[..dx], &row[dx..]);
            for a in 0..dy {
                for b in 0..dy {
                    dtd[(a, b)] += d[a] * d[b] / n;
                }
                for b in 0..dx {
                    dtc[(a, b)] += d[a] * c[b] / n;
                }
                dte[a] += d[a] * inner.rows.targets[i] / n;
            }
        }
        let dtd = dtd.llt(Side::Lower).map_err(|_| {
            Error::config("n_inner", "DᵀD is singular: use at least dim_y inner rows")
        })?;
        Ok(Self {
            outer,
            dtd,
            dtc,
            dte,
        })
    }

    fn y_star(&self, x: &Vector) -> Vector {
        // DᵀD y = Dᵀ(e − Cx)
        let rhs = &self.dte - &self.dtc * x;
        self.dtd.solve(&rhs)
    }
}

impl Reference for LeastSquaresReference {
    fn evaluate(&self, x: &Vector) -> Result<ReferencePoint> {
        let y = self.y_star(x);
        let value = self.outer.value(x, &y, Batch::Full);
        let mut gy = Vector::zeros(y.nrows());
        self.outer.grad_y(x, &y, Batch::Full, &mut gy);
        // dy*/dx = −(DᵀD)⁻¹DᵀC, so ∇F = (dy*/dx)ᵀ ∇ᵧf = −(DᵀC)ᵀ (DᵀD)⁻¹ ∇ᵧf.
        let w = self.dtd.solve(&gy);
        let mut hypergradient = self.dtc.transpose() * &w;
        hypergradient.scale(-1.0);
        Ok(ReferencePoint {
            value,
            hypergradient,
            y_star: Some(y),
        })
    }
}

impl LeastSquaresConfig {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        check_at_least("dim_x", self.dim_x, 1)?;
        check_at_least("dim_y", self.dim_y, 1)?;
        check_at_least("n_outer", self.n_outer, 1)?;
        check_at_least("n_inner", self.n_inner, self.dim_y)?;
        check_non_negative("noise", self.noise)
    }

    /// Draws the problem. Start: x₀ = 0, y₀ = 0.
    pub fn build(&self) -> Result<Problem> {
        self.validate()?;
        let (dx, dy) = (self.dim_x, self.dim_y);
        let mut rng = rng_from_seed(self.seed, 0);
        let mut uniform = |n: usize| (0..n).map(|_| uniform01(&mut rng)).collect::<Vec<f64>>();
        let a = uniform(self.n_outer * dy);
        let cd = uniform(self.n_inner * (dx + dy));
        let (u, u1, u2) = (uniform(dy), uniform(dx), uniform(dy));
        let mut noise_rng = rng_from_seed(self.seed, 1);
        let b = (0..self.n_outer)
            .map(|i| {
                dot(&a[i * dy..(i + 1) * dy], &u) + self.noise * standard_normal(&mut noise_rng)
            })
            .collect();
        let w = dx + dy;
        let e = (0..self.n_inner)
            .map(|i| {
                let row = &cd[i * w..(i + 1) * w];
                dot(&row[..dx], &u1)
                    + dot(&row[dx..], &u2)
                    + self.noise * standard_normal(&mut noise_rng)
            })
            .collect();
        let outer = Arc::new(LeastSquaresOuter {
            dim_x: dx,
            rows: Rows {
                data: a,
                width: dy,
                targets: b,
            },
        });
        let inner = LeastSquaresInner {
            dim_x: dx,
            dim_y: dy,
            rows: Rows {
                data: cd,
                width: w,
                targets: e,
            },
        };
        let reference = LeastSquaresReference::new(outer.clone(), &inner)?;
        Ok(
            Problem::from_arcs("fsla_least_squares", outer, Arc::new(inner))?
                .with_reference(reference),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::assert_objective_matches_fd;

    fn small() -> Problem {
        LeastSquaresConfig {
            n_outer: 50,
            n_inner: 60,
            dim_x: 3,
            dim_y: 4,
            ..Default::default()
        }
        .build()
        .unwrap()
    }

    #[test]
    fn oracles_match_finite_differences() {
        let problem = small();
        // Quadratic objectives: central differences are exact up to rounding (~1e-10).
        assert_objective_matches_fd(problem.f(), 2, 1e-6, 1);
        assert_objective_matches_fd(problem.g(), 2, 1e-6, 2);
    }

    #[test]
    fn reference_gradient_matches_a_finite_difference_of_f() {
        let problem = small();
        let reference = problem.reference().unwrap();
        let x = Vector::from_fn(3, |i| 0.3 * i as f64 - 0.2);
        let point = reference.evaluate(&x).unwrap();
        for k in 0..3 {
            let h = 1e-5;
            let mut xp = x.clone();
            xp[k] += h;
            let mut xm = x.clone();
            xm[k] -= h;
            let fd = (reference.evaluate(&xp).unwrap().value
                - reference.evaluate(&xm).unwrap().value)
                / (2.0 * h);
            let exact = point.hypergradient[k];
            // F is quadratic: the central difference is exact up to rounding of F (~1e-16 / h).
            assert!(
                (fd - exact).abs() <= 1e-6 * (1.0 + exact.abs()),
                "{k}: {fd} vs {exact}"
            );
        }
        let mut gy = Vector::zeros(4);
        problem
            .g()
            .grad_y(&x, point.y_star.as_ref().unwrap(), Batch::Full, &mut gy);
        assert!(gy.norm() < 1e-10);
    }
}
