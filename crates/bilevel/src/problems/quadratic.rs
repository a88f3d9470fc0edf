//! # The benchmark quadratic (algorithms.md §9.1 and §9.9)
//!
//! The reference benchmark's "simulated" problem: both levels are finite sums of per-sample
//! quadratics with rank-one curvature,
//!
//! $$ q_i(x, y) = \tfrac12 (r_i^\top y)^2 + \tfrac12 (k_i^\top x)^2 + (u_i^\top x)(w_i^\top y)
//!    + a_i^\top y + c_i^\top x, $$
//!
//! i.e. H_i = r_i r_iᵀ, K_i = k_i k_iᵀ, C_i = u_i w_iᵀ. The inner objective g and the outer
//! objective f are independent draws of the same law:
//! - r_i = A z_i, z_i ~ N(0, I), A = U D Uᵀ, U random orthogonal, D² = `dim_y` values log-spaced
//!   over [μ, L], so E\[H_i\] = U D² Uᵀ has spectrum [μ, L];
//! - k_i likewise in dim x, except the first value of D² is exactly 0 (one flat direction);
//! - u_i = U_c S ω_i, w_i = V_c ω_i, ω_i ~ N(0, I_{dim y}), with U_c, V_c the singular vectors of
//!   a Gaussian dim x × dim y matrix and S the "diagonal" of min(dim x, dim y) values log-spaced
//!   over [μ, L_cross], so E\[C_i\] = U_c S V_cᵀ;
//! - a_i ~ N(0, I), c_i ~ N(0, I).
//!
//! Minibatch oracles use the per-sample vectors (O(batch · dim)); full-batch oracles use the
//! precomputed mean matrices. The [`Reference`] is closed-form:
//! y*(x) = −H_g⁻¹(ā_g + C_gᵀx), ∇F(x) = ∇ₓf(x, y*) − C_g H_g⁻¹ ∇ᵧf(x, y*), and F* from the
//! (quadratic) F when its Hessian is positive definite.
//!
//! Defaults are the benchmark's: n = 1024 samples per level, dim x = dim y = 100, μ = 0.1,
//! L = 1, L_cross = 0.1; start x₀ = −2 (every coordinate), y₀ = 0.
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use std::sync::Arc;

use faer::linalg::solvers::Solve;
use faer::{Scale, Side};
use serde::{Deserialize, Serialize};

use crate::core::error::{Error, Result, check_at_least, check_positive};
use crate::core::linalg::{
    Matrix, Rng, Vector, VectorExt, axpy, constant, dot, gemv, gemv_t, normal_vector,
    rng_from_seed, standard_normal, to_row_major,
};
use crate::core::{Batch, Objective, Problem, Reference, ReferencePoint};

/// Parameters of the benchmark quadratic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuadraticConfig {
    /// Dimension of the outer variable x.
    pub dim_x: usize,
    /// Dimension of the inner variable y.
    pub dim_y: usize,
    /// Samples in the inner objective g.
    pub n_inner: usize,
    /// Samples in the outer objective f.
    pub n_outer: usize,
    /// μ: smallest eigenvalue of E\[H\] (strong convexity of g in y).
    pub mu: f64,
    /// L: largest eigenvalue of E\[H\] and E\[K\].
    pub smoothness: f64,
    /// L_cross: largest singular value of E\[C\].
    pub cross_smoothness: f64,
    /// Seed of the problem draw (independent of the solvers' seeds).
    pub seed: u64,
    /// Starting outer point: every coordinate of x₀ equals this value.
    pub x0: f64,
}

impl Default for QuadraticConfig {
    fn default() -> Self {
        Self {
            dim_x: 100,
            dim_y: 100,
            n_inner: 1024,
            n_outer: 1024,
            mu: 0.1,
            smoothness: 1.0,
            cross_smoothness: 0.1,
            seed: 0,
            x0: -2.0,
        }
    }
}

impl QuadraticConfig {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        check_at_least("dim_x", self.dim_x, 1)?;
        check_at_least("dim_y", self.dim_y, 1)?;
        check_at_least("n_inner", self.n_inner, 1)?;
        check_at_least("n_outer", self.n_outer, 1)?;
        check_positive("mu", self.mu)?;
        check_positive("smoothness", self.smoothness)?;
        check_positive("cross_smoothness", self.cross_smoothness)?;
        if self.mu > self.smoothness {
            return Err(Error::config(
                "mu",
                format!(
                    "must be <= smoothness ({}), got {}",
                    self.smoothness, self.mu
                ),
            ));
        }
        if self.n_inner < self.dim_y {
            return Err(Error::config(
                "n_inner",
                format!(
                    "must be >= dim_y ({}): the inner Hessian is a mean of rank-one samples and \
                     is singular with fewer samples than dimensions",
                    self.dim_y
                ),
            ));
        }
        if !self.x0.is_finite() {
            return Err(Error::config("x0", "must be finite"));
        }
        Ok(())
    }

    /// Draws the problem.
    pub fn build(&self) -> Result<Problem> {
        self.validate()?;
        let mut rng = rng_from_seed(self.seed, 0);
        let g = QuadraticObjective::draw(self, self.n_inner, &mut rng);
        let f = QuadraticObjective::draw(self, self.n_outer, &mut rng);
        quadratic_problem("quadratic", f, g, constant(self.dim_x, self.x0))
    }
}

/// One level (f or g) of the quadratic: per-sample rank-one factors and the mean matrices.
#[derive(Clone, Debug)]
pub struct QuadraticObjective {
    dim_x: usize,
    dim_y: usize,
    n: usize,
    /// n × dim_y, row-major: r_i (H_i = r_i r_iᵀ).
    r: Vec<f64>,
    /// n × dim_x: k_i (K_i = k_i k_iᵀ).
    k: Vec<f64>,
    /// n × dim_x: u_i (C_i = u_i w_iᵀ).
    u: Vec<f64>,
    /// n × dim_y: w_i.
    w: Vec<f64>,
    /// n × dim_y: a_i.
    a: Vec<f64>,
    /// n × dim_x: c_i.
    c: Vec<f64>,
    /// Means: H (dim_y²), K (dim_x²), C (dim_x × dim_y), ā, c̄ — row-major.
    h_mean: Vec<f64>,
    k_mean: Vec<f64>,
    c_mean: Vec<f64>,
    a_mean: Vec<f64>,
    c_vec_mean: Vec<f64>,
}

fn log_spaced(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    if count == 1 {
        return vec![lo];
    }
    let (llo, lhi) = (lo.ln(), hi.ln());
    (0..count)
        .map(|i| (llo + (lhi - llo) * i as f64 / (count - 1) as f64).exp())
        .collect()
}

fn random_orthogonal(rng: &mut Rng, n: usize) -> Matrix {
    let g = Matrix::from_fn(n, n, |_, _| standard_normal(rng));
    g.qr().compute_Q()
}

fn rows_of(m: &Matrix) -> Vec<f64> {
    to_row_major(m)
}

impl QuadraticObjective {
    fn draw(cfg: &QuadraticConfig, n: usize, rng: &mut Rng) -> Self {
        let (dx, dy) = (cfg.dim_x, cfg.dim_y);
        // A = U D Uᵀ with D² log-spaced over [μ, L].
        let spectrum_y = log_spaced(cfg.mu, cfg.smoothness, dy);
        let uy = random_orthogonal(rng, dy);
        let dsqrt_y = Matrix::from_fn(
            dy,
            dy,
            |i, j| if i == j { spectrum_y[i].sqrt() } else { 0.0 },
        );
        let a_y = &uy * &dsqrt_y * uy.transpose();
        let mut spectrum_x = log_spaced(cfg.mu, cfg.smoothness, dx);
        spectrum_x[0] = 0.0;
        let ux = random_orthogonal(rng, dx);
        let dsqrt_x = Matrix::from_fn(
            dx,
            dx,
            |i, j| if i == j { spectrum_x[i].sqrt() } else { 0.0 },
        );
        let a_x = &ux * &dsqrt_x * ux.transpose();
        // Singular vectors of a Gaussian dim_x × dim_y matrix.
        let gauss = Matrix::from_fn(dx, dy, |_, _| standard_normal(rng));
        let svd = gauss
            .svd()
            .expect("invariant: SVD of a finite Gaussian matrix converges");
        let (uc, vc) = (svd.U().to_owned(), svd.V().to_owned());
        let singular = log_spaced(cfg.mu, cfg.cross_smoothness, dx.min(dy));
        let s = Matrix::from_fn(dx, dy, |i, j| if i == j { singular[i] } else { 0.0 });
        let us = &uc * &s; // dim_x × dim_y

        let z = Matrix::from_fn(n, dy, |_, _| standard_normal(rng));
        let zx = Matrix::from_fn(n, dx, |_, _| standard_normal(rng));
        let omega = Matrix::from_fn(n, dy, |_, _| standard_normal(rng));
        let a_lin = Matrix::from_fn(n, dy, |_, _| standard_normal(rng));
        let c_lin = Matrix::from_fn(n, dx, |_, _| standard_normal(rng));
        // Row i of each factor matrix is the sample's vector: R = Z Aᵀ, etc.
        let r = &z * a_y.transpose();
        let k = &zx * a_x.transpose();
        let u = &omega * us.transpose();
        let w = &omega * vc.transpose();
        let inv_n = Scale(1.0 / n as f64);
        let h_mean = r.transpose() * &r * inv_n;
        let k_mean = k.transpose() * &k * inv_n;
        let c_mean = u.transpose() * &w * inv_n;
        let a_mean: Vec<f64> = (0..dy)
            .map(|j| (0..n).map(|i| a_lin[(i, j)]).sum::<f64>() / n as f64)
            .collect();
        let c_vec_mean: Vec<f64> = (0..dx)
            .map(|j| (0..n).map(|i| c_lin[(i, j)]).sum::<f64>() / n as f64)
            .collect();
        Self {
            dim_x: dx,
            dim_y: dy,
            n,
            r: rows_of(&r),
            k: rows_of(&k),
            u: rows_of(&u),
            w: rows_of(&w),
            a: rows_of(&a_lin),
            c: rows_of(&c_lin),
            h_mean: rows_of(&h_mean),
            k_mean: rows_of(&k_mean),
            c_mean: rows_of(&c_mean),
            a_mean,
            c_vec_mean,
        }
    }

    /// A level from explicit per-sample factors (row-major, one sample per row).
    #[allow(clippy::too_many_arguments)]
    pub fn from_factors(
        dim_x: usize,
        dim_y: usize,
        r: Vec<f64>,
        k: Vec<f64>,
        u: Vec<f64>,
        w: Vec<f64>,
        a: Vec<f64>,
        c: Vec<f64>,
    ) -> Result<Self> {
        let n = r.len() / dim_y.max(1);
        let checks = [
            ("r", r.len(), n * dim_y),
            ("k", k.len(), n * dim_x),
            ("u", u.len(), n * dim_x),
            ("w", w.len(), n * dim_y),
            ("a", a.len(), n * dim_y),
            ("c", c.len(), n * dim_x),
        ];
        for (what, found, expected) in checks {
            if found != expected || n == 0 {
                return Err(Error::DimensionMismatch {
                    what: format!("quadratic factor {what}"),
                    expected,
                    found,
                });
            }
        }
        let mean_outer = |p: &[f64], dp: usize, q: &[f64], dq: usize| {
            let mut m = vec![0.0; dp * dq];
            for i in 0..n {
                for a in 0..dp {
                    let pa = p[i * dp + a] / n as f64;
                    axpy(pa, &q[i * dq..(i + 1) * dq], &mut m[a * dq..(a + 1) * dq]);
                }
            }
            m
        };
        let mean_vec = |p: &[f64], d: usize| {
            (0..d)
                .map(|j| (0..n).map(|i| p[i * d + j]).sum::<f64>() / n as f64)
                .collect::<Vec<_>>()
        };
        Ok(Self {
            dim_x,
            dim_y,
            n,
            h_mean: mean_outer(&r, dim_y, &r, dim_y),
            k_mean: mean_outer(&k, dim_x, &k, dim_x),
            c_mean: mean_outer(&u, dim_x, &w, dim_y),
            a_mean: mean_vec(&a, dim_y),
            c_vec_mean: mean_vec(&c, dim_x),
            r,
            k,
            u,
            w,
            a,
            c,
        })
    }

    #[inline]
    fn row(m: &[f64], i: usize, d: usize) -> &[f64] {
        &m[i * d..(i + 1) * d]
    }

    /// Mean Hessian in y as a dense matrix.
    pub fn hessian_yy(&self) -> Matrix {
        Matrix::from_fn(self.dim_y, self.dim_y, |i, j| {
            self.h_mean[i * self.dim_y + j]
        })
    }
    /// Mean Hessian in x as a dense matrix.
    pub fn hessian_xx(&self) -> Matrix {
        Matrix::from_fn(self.dim_x, self.dim_x, |i, j| {
            self.k_mean[i * self.dim_x + j]
        })
    }
    /// Mean cross matrix C = ∇²ₓᵧ (dim x × dim y).
    pub fn cross(&self) -> Matrix {
        Matrix::from_fn(self.dim_x, self.dim_y, |i, j| {
            self.c_mean[i * self.dim_y + j]
        })
    }
    /// Mean linear term in y.
    pub fn linear_y(&self) -> Vector {
        Vector::from_fn(self.dim_y, |i| self.a_mean[i])
    }
    /// Mean linear term in x.
    pub fn linear_x(&self) -> Vector {
        Vector::from_fn(self.dim_x, |i| self.c_vec_mean[i])
    }

    fn check_batch(&self, batch: Batch<'_>) {
        if let Batch::Indices(idx) = batch {
            assert!(!idx.is_empty(), "quadratic: empty minibatch");
            assert!(
                idx.iter().all(|&i| i < self.n),
                "quadratic: sample index out of range (n = {})",
                self.n
            );
        }
    }
}

impl Objective for QuadraticObjective {
    fn dims(&self) -> (usize, usize) {
        (self.dim_x, self.dim_y)
    }
    fn n_samples(&self) -> usize {
        self.n
    }
    fn value(&self, x: &Vector, y: &Vector, batch: Batch<'_>) -> f64 {
        self.check_batch(batch);
        let (dx, dy) = (self.dim_x, self.dim_y);
        let (xs, ys) = (x.as_slice(), y.as_slice());
        match batch {
            Batch::Full => {
                let mut hy = vec![0.0; dy];
                gemv(&self.h_mean, dy, dy, ys, &mut hy);
                let mut kx = vec![0.0; dx];
                gemv(&self.k_mean, dx, dx, xs, &mut kx);
                let mut cy = vec![0.0; dx];
                gemv(&self.c_mean, dx, dy, ys, &mut cy);
                0.5 * dot(ys, &hy)
                    + 0.5 * dot(xs, &kx)
                    + dot(xs, &cy)
                    + dot(&self.a_mean, ys)
                    + dot(&self.c_vec_mean, xs)
            }
            Batch::Indices(idx) => {
                let mut total = 0.0;
                for &i in idx {
                    let ry = dot(Self::row(&self.r, i, dy), ys);
                    let kx = dot(Self::row(&self.k, i, dx), xs);
                    let ux = dot(Self::row(&self.u, i, dx), xs);
                    let wy = dot(Self::row(&self.w, i, dy), ys);
                    total += 0.5 * ry * ry
                        + 0.5 * kx * kx
                        + ux * wy
                        + dot(Self::row(&self.a, i, dy), ys)
                        + dot(Self::row(&self.c, i, dx), xs);
                }
                total / idx.len() as f64
            }
        }
    }
    fn grad_x(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        self.check_batch(batch);
        let (dx, dy) = (self.dim_x, self.dim_y);
        let (xs, ys) = (x.as_slice(), y.as_slice());
        let o = out.as_mut_slice();
        match batch {
            Batch::Full => {
                // K x + C y + c̄
                gemv(&self.k_mean, dx, dx, xs, o);
                for i in 0..dx {
                    o[i] += dot(Self::row(&self.c_mean, i, dy), ys) + self.c_vec_mean[i];
                }
            }
            Batch::Indices(idx) => {
                o.fill(0.0);
                let scale = 1.0 / idx.len() as f64;
                for &i in idx {
                    let k_i = Self::row(&self.k, i, dx);
                    let u_i = Self::row(&self.u, i, dx);
                    axpy(scale * dot(k_i, xs), k_i, o);
                    axpy(scale * dot(Self::row(&self.w, i, dy), ys), u_i, o);
                    axpy(scale, Self::row(&self.c, i, dx), o);
                }
            }
        }
    }
    fn grad_y(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        self.check_batch(batch);
        let (dx, dy) = (self.dim_x, self.dim_y);
        let (xs, ys) = (x.as_slice(), y.as_slice());
        let o = out.as_mut_slice();
        match batch {
            Batch::Full => {
                // H y + Cᵀ x + ā
                gemv(&self.h_mean, dy, dy, ys, o);
                for i in 0..dx {
                    axpy(xs[i], Self::row(&self.c_mean, i, dy), o);
                }
                axpy(1.0, &self.a_mean, o);
            }
            Batch::Indices(idx) => {
                o.fill(0.0);
                let scale = 1.0 / idx.len() as f64;
                for &i in idx {
                    let r_i = Self::row(&self.r, i, dy);
                    axpy(scale * dot(r_i, ys), r_i, o);
                    let ux = dot(Self::row(&self.u, i, dx), xs);
                    axpy(scale * ux, Self::row(&self.w, i, dy), o);
                    axpy(scale, Self::row(&self.a, i, dy), o);
                }
            }
        }
    }
    fn hvp_yy(&self, _x: &Vector, _y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        self.check_batch(batch);
        let dy = self.dim_y;
        let (vs, o) = (v.as_slice(), out.as_mut_slice());
        match batch {
            Batch::Full => gemv(&self.h_mean, dy, dy, vs, o),
            Batch::Indices(idx) => {
                o.fill(0.0);
                let scale = 1.0 / idx.len() as f64;
                for &i in idx {
                    let r_i = Self::row(&self.r, i, dy);
                    axpy(scale * dot(r_i, vs), r_i, o);
                }
            }
        }
    }
    fn cross_xy(&self, _x: &Vector, _y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        self.check_batch(batch);
        let (dx, dy) = (self.dim_x, self.dim_y);
        let (vs, o) = (v.as_slice(), out.as_mut_slice());
        match batch {
            Batch::Full => gemv(&self.c_mean, dx, dy, vs, o),
            Batch::Indices(idx) => {
                o.fill(0.0);
                let scale = 1.0 / idx.len() as f64;
                for &i in idx {
                    let wv = dot(Self::row(&self.w, i, dy), vs);
                    axpy(scale * wv, Self::row(&self.u, i, dx), o);
                }
            }
        }
    }
    fn cross_yx(&self, _x: &Vector, _y: &Vector, u: &Vector, batch: Batch<'_>, out: &mut Vector) {
        self.check_batch(batch);
        let (dx, dy) = (self.dim_x, self.dim_y);
        let (us, o) = (u.as_slice(), out.as_mut_slice());
        match batch {
            Batch::Full => gemv_t(&self.c_mean, dx, dy, us, o),
            Batch::Indices(idx) => {
                o.fill(0.0);
                let scale = 1.0 / idx.len() as f64;
                for &i in idx {
                    let ux = dot(Self::row(&self.u, i, dx), us);
                    axpy(scale * ux, Self::row(&self.w, i, dy), o);
                }
            }
        }
    }
}

/// The closed-form reference of a quadratic bilevel problem.
pub struct QuadraticReference {
    f: Arc<QuadraticObjective>,
    /// Cholesky factor of H_g.
    h_g: faer::linalg::solvers::Llt<f64>,
    c_g: Matrix,
    a_g: Vector,
    f_star: Option<f64>,
}

impl QuadraticReference {
    /// The reference for outer level `f` and inner level `g`. Fails when H_g is not positive
    /// definite (the inner problem has no unique solution).
    pub fn new(f: Arc<QuadraticObjective>, g: &QuadraticObjective) -> Result<Self> {
        let h_g = g.hessian_yy().llt(Side::Lower).map_err(|_| {
            Error::config("mu", "the inner Hessian E[H_g] is not positive definite")
        })?;
        let mut reference = Self {
            f,
            h_g,
            c_g: g.cross(),
            a_g: g.linear_y(),
            f_star: None,
        };
        reference.f_star = reference.compute_optimal_value();
        Ok(reference)
    }

    /// y*(x) = −H_g⁻¹ (ā_g + C_gᵀ x).
    pub fn y_star(&self, x: &Vector) -> Vector {
        let rhs = &self.a_g + self.c_g.transpose() * x;
        let mut y = self.h_g.solve(&rhs);
        y.scale(-1.0);
        y
    }

    /// F is quadratic in x: F(x) = ½ xᵀ M x + pᵀx + const with y*(x) = P x + q. Returns
    /// min F when M is positive definite.
    fn compute_optimal_value(&self) -> Option<f64> {
        let dx = self.c_g.nrows();
        // P = −H_g⁻¹ C_gᵀ (dim_y × dim_x), q = −H_g⁻¹ ā_g.
        let mut p = self.h_g.solve(self.c_g.transpose());
        p *= Scale(-1.0);
        let h_f = self.f.hessian_yy();
        let k_f = self.f.hessian_xx();
        let c_f = self.f.cross();
        let cp = &c_f * &p;
        let m = p.transpose() * &h_f * &p + &k_f + &cp + cp.transpose();
        let m_sym = Matrix::from_fn(dx, dx, |i, j| 0.5 * (m[(i, j)] + m[(j, i)]));
        let llt = m_sym.llt(Side::Lower).ok()?;
        let grad0 = self.hypergradient_and_value(&Vector::zeros(dx)).1;
        let mut x_star = llt.solve(&grad0);
        x_star.scale(-1.0);
        Some(self.hypergradient_and_value(&x_star).0)
    }

    fn hypergradient_and_value(&self, x: &Vector) -> (f64, Vector) {
        let (dx, dy) = (self.c_g.nrows(), self.c_g.ncols());
        let y = self.y_star(x);
        let value = self.f.value(x, &y, Batch::Full);
        let mut gx = Vector::zeros(dx);
        let mut gy = Vector::zeros(dy);
        self.f.grad_x(x, &y, Batch::Full, &mut gx);
        self.f.grad_y(x, &y, Batch::Full, &mut gy);
        let v = self.h_g.solve(&gy);
        let hypergradient = gx - &self.c_g * &v;
        (value, hypergradient)
    }
}

impl Reference for QuadraticReference {
    fn evaluate(&self, x: &Vector) -> Result<ReferencePoint> {
        let (value, hypergradient) = self.hypergradient_and_value(x);
        Ok(ReferencePoint {
            value,
            hypergradient,
            y_star: Some(self.y_star(x)),
        })
    }
    fn optimal_value(&self) -> Option<f64> {
        self.f_star
    }
}

/// The quadratic problem on levels `f` and `g` (e.g. from
/// [`QuadraticObjective::from_factors`]), with the closed-form reference and start (x₀, 0).
pub fn quadratic_problem(
    name: &str,
    f: QuadraticObjective,
    g: QuadraticObjective,
    x0: Vector,
) -> Result<Problem> {
    let f = Arc::new(f);
    let reference = QuadraticReference::new(f.clone(), &g)?;
    let dy = g.dim_y;
    Problem::from_arcs(name, f, Arc::new(g))?
        .with_reference(reference)
        .with_start(x0, Vector::zeros(dy))
}

/// A tiny deterministic quadratic (dim x = 2, dim y = 3; three samples in g, two in f;
/// hand-picked factors) for unit tests. The three r_i of g are linearly independent, so H_g is
/// positive definite.
pub fn tiny() -> Problem {
    let g = QuadraticObjective::from_factors(
        2,
        3,
        vec![1.0, 0.5, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.5],
        vec![1.0, 0.0, 0.0, 1.0, 0.5, 0.5],
        vec![0.5, 0.0, 0.0, 0.5, 0.2, 0.1],
        vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0],
        vec![0.1, -0.2, 0.3, 0.0, 0.4, -0.1, 0.2, 0.0, 0.0],
        vec![0.0, 0.0, 0.0, 0.0, 0.1, 0.0],
    )
    .expect("invariant: hand-written factors are consistent");
    let f = QuadraticObjective::from_factors(
        2,
        3,
        vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        vec![1.0, 0.0, 0.0, 1.0],
        vec![0.3, 0.0, 0.0, 0.3],
        vec![0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        vec![1.0, 0.0, -1.0, 0.0, 2.0, 0.0],
        vec![0.5, -0.5, 0.0, 0.0],
    )
    .expect("invariant: hand-written factors are consistent");
    quadratic_problem(
        "quadratic_tiny",
        f,
        g,
        Vector::from_fn(2, |i| [1.0, -1.0][i]),
    )
    .expect("invariant: the tiny quadratic has a positive definite inner Hessian")
}

/// Draws a random point (x, y) and direction pair for tests, from `seed`.
pub fn random_point(problem: &Problem, seed: u64) -> (Vector, Vector) {
    let (dx, dy) = problem.dims();
    let mut rng = rng_from_seed(seed, 1);
    (normal_vector(&mut rng, dx), normal_vector(&mut rng, dy))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> QuadraticConfig {
        QuadraticConfig {
            dim_x: 5,
            dim_y: 8,
            n_inner: 64,
            n_outer: 32,
            ..QuadraticConfig::default()
        }
    }

    #[test]
    fn inner_spectrum_matches_the_construction() {
        let cfg = QuadraticConfig {
            n_inner: 20_000,
            ..small()
        };
        let mut rng = rng_from_seed(cfg.seed, 0);
        let g = QuadraticObjective::draw(&cfg, cfg.n_inner, &mut rng);
        let eig = g
            .hessian_yy()
            .self_adjoint_eigenvalues(Side::Lower)
            .unwrap();
        let (lo, hi) = (eig[0], eig[eig.len() - 1]);
        // With 20 000 samples the empirical mean is within a few percent of E[H] (spectrum
        // [0.1, 1]); allow 30 % for the smallest eigenvalue's relative fluctuation.
        assert!((lo - 0.1).abs() < 0.03, "lowest eigenvalue {lo}");
        assert!((hi - 1.0).abs() < 0.1, "highest eigenvalue {hi}");
    }

    #[test]
    fn full_batch_equals_mean_of_all_samples() {
        let problem = small().build().unwrap();
        let (x, y) = random_point(&problem, 3);
        let all: Vec<usize> = (0..problem.g().n_samples()).collect();
        let g = problem.g();
        let (dx, dy) = problem.dims();
        let (mut a, mut b) = (Vector::zeros(dy), Vector::zeros(dy));
        g.grad_y(&x, &y, Batch::Full, &mut a);
        g.grad_y(&x, &y, Batch::Indices(&all), &mut b);
        assert!((&a - &b).norm() < 1e-12 * (1.0 + a.norm()));
        let (mut a, mut b) = (Vector::zeros(dx), Vector::zeros(dx));
        g.grad_x(&x, &y, Batch::Full, &mut a);
        g.grad_x(&x, &y, Batch::Indices(&all), &mut b);
        assert!((&a - &b).norm() < 1e-12 * (1.0 + a.norm()));
        let va = g.value(&x, &y, Batch::Full);
        let vb = g.value(&x, &y, Batch::Indices(&all));
        assert!((va - vb).abs() < 1e-12 * (1.0 + va.abs()));
    }

    #[test]
    fn reference_is_a_stationary_point_of_g() {
        let problem = small().build().unwrap();
        let (x, _) = random_point(&problem, 9);
        let point = problem.reference().unwrap().evaluate(&x).unwrap();
        let y_star = point.y_star.unwrap();
        let mut gy = Vector::zeros(problem.dims().1);
        problem.g().grad_y(&x, &y_star, Batch::Full, &mut gy);
        assert!(gy.norm() < 1e-10, "‖∇ᵧg(x, y*)‖ = {}", gy.norm());
    }

    #[test]
    fn rejects_bad_parameters() {
        let bad = QuadraticConfig { mu: 2.0, ..small() };
        assert!(bad.build().unwrap_err().to_string().contains("mu"));
        let bad = QuadraticConfig {
            dim_y: 0,
            ..small()
        };
        assert!(bad.build().unwrap_err().to_string().contains("dim_y"));
    }
}
