//! # Ridge hyperparameter tuning with a closed-form inner solution
//!
//! Synthetic regression data a_i ~ N(0, I_d), b_i = a_iᵀw_true + ε_i (ε ~ N(0, noise²),
//! w_true ~ N(0, I)), split into n training and n' validation samples:
//!
//! $$ g(x, y) = \frac1{2n}\lVert A y - b\rVert^2 + \frac12\sum_j \lambda_{\pi(j)}(x)\thinspace y_j^2,
//!    \qquad f(x, y) = \frac1{2n'}\lVert A' y - b'\rVert^2, $$
//!
//! with λ = exp(x) or x and `per_feature` or `scalar` penalties as in
//! [`logreg_hpo`](super::logreg_hpo). The inner problem is a linear system:
//! y*(x) = H⁻¹Aᵀb/n with H = AᵀA/n + diag λ, and the [`Reference`] is exact (Cholesky):
//! ∇F(x)_k = −λ'_k Σ_{π(j)=k} y*_j v_j with v = H⁻¹∇ᵧf(y*). Handy for tests: everything is
//! closed-form and cheap. Task metric: `test_mse` on a fresh test set of n' samples.
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use std::sync::Arc;

use faer::Side;
use faer::linalg::solvers::Solve;
use serde::{Deserialize, Serialize};

use super::common::{Rows, check_batch, for_each_sample};
use super::logreg_hpo::{Parametrization, Penalty, PenaltyMap};
use crate::core::error::{Error, Result, check_at_least, check_non_negative};
use crate::core::linalg::{normal_vector, rng_from_seed, standard_normal};
use crate::core::{
    Batch, Matrix, Objective, Problem, Reference, ReferencePoint, TaskMetrics, Vector, VectorExt,
};
use crate::data::DenseMatrix;

/// Configuration of [`ridge_hpo`](self).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RidgeHpoConfig {
    /// Training samples n.
    pub n_train: usize,
    /// Validation samples n'.
    pub n_validation: usize,
    /// Features d.
    pub dim: usize,
    /// Standard deviation of the label noise.
    pub noise: f64,
    /// `per_feature` or `scalar` (`per_class` is not defined for regression).
    pub penalty: Penalty,
    /// λ = exp(x) or λ = x.
    pub parametrization: Parametrization,
    /// Starting value of every coordinate of x.
    pub x0: f64,
    /// Seed of the data draw.
    pub seed: u64,
}

impl Default for RidgeHpoConfig {
    fn default() -> Self {
        Self {
            n_train: 200,
            n_validation: 200,
            dim: 20,
            noise: 1.0,
            penalty: Penalty::PerFeature,
            parametrization: Parametrization::Exp,
            x0: 0.0,
            seed: 0,
        }
    }
}

/// Least squares on a dense design plus an optional weighted ridge penalty.
pub struct RidgeObjective {
    a: DenseMatrix,
    b: Vec<f64>,
    /// `Some` for g (the penalty), `None` for f.
    penalty: Option<PenaltyMap>,
    dim_x: usize,
}

impl RidgeObjective {
    fn residual_loop(&self, y: &[f64], batch: Batch<'_>, mut f: impl FnMut(usize, f64)) -> f64 {
        for_each_sample(batch, self.a.rows(), |i| {
            f(i, self.a.dot(i, y) - self.b[i]);
        })
    }
}

impl Objective for RidgeObjective {
    fn dims(&self) -> (usize, usize) {
        (self.dim_x, self.a.cols())
    }
    fn n_samples(&self) -> usize {
        self.a.rows()
    }
    fn value(&self, x: &Vector, y: &Vector, batch: Batch<'_>) -> f64 {
        check_batch(batch, self.a.rows(), "ridge_hpo");
        let ys = y.as_slice();
        let mut total = 0.0;
        let inv = self.residual_loop(ys, batch, |_, r| total += 0.5 * r * r);
        let mut pen = 0.0;
        if let Some(p) = &self.penalty {
            p.for_each(x.as_slice(), ys.len(), |m, _, l, _| {
                pen += 0.5 * l * ys[m] * ys[m]
            });
        }
        total * inv + pen
    }
    fn grad_x(&self, x: &Vector, y: &Vector, _batch: Batch<'_>, out: &mut Vector) {
        let ys = y.as_slice();
        let o = out.as_mut_slice();
        o.fill(0.0);
        if let Some(p) = &self.penalty {
            p.for_each(x.as_slice(), ys.len(), |m, k, _, dl| {
                o[k] += 0.5 * dl * ys[m] * ys[m]
            });
        }
    }
    fn grad_y(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        check_batch(batch, self.a.rows(), "ridge_hpo");
        let ys = y.as_slice();
        let o = out.as_mut_slice();
        o.fill(0.0);
        let n = batch.len(self.a.rows()).max(1) as f64;
        self.residual_loop(ys, batch, |i, r| self.a.axpy(i, r / n, o));
        if let Some(p) = &self.penalty {
            p.for_each(x.as_slice(), ys.len(), |m, _, l, _| o[m] += l * ys[m]);
        }
    }
    fn hvp_yy(&self, x: &Vector, y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        check_batch(batch, self.a.rows(), "ridge_hpo");
        let (ys, vs) = (y.as_slice(), v.as_slice());
        let o = out.as_mut_slice();
        o.fill(0.0);
        let n = batch.len(self.a.rows()).max(1) as f64;
        for_each_sample(batch, self.a.rows(), |i| {
            self.a.axpy(i, self.a.dot(i, vs) / n, o)
        });
        if let Some(p) = &self.penalty {
            p.for_each(x.as_slice(), ys.len(), |m, _, l, _| o[m] += l * vs[m]);
        }
    }
    fn cross_xy(&self, x: &Vector, y: &Vector, v: &Vector, _b: Batch<'_>, out: &mut Vector) {
        let (ys, vs) = (y.as_slice(), v.as_slice());
        let o = out.as_mut_slice();
        o.fill(0.0);
        if let Some(p) = &self.penalty {
            p.for_each(x.as_slice(), ys.len(), |m, k, _, dl| {
                o[k] += dl * ys[m] * vs[m]
            });
        }
    }
    fn cross_yx(&self, x: &Vector, y: &Vector, u: &Vector, _b: Batch<'_>, out: &mut Vector) {
        let (ys, us) = (y.as_slice(), u.as_slice());
        let o = out.as_mut_slice();
        o.fill(0.0);
        if let Some(p) = &self.penalty {
            p.for_each(x.as_slice(), ys.len(), |m, k, _, dl| {
                o[m] = dl * ys[m] * us[k]
            });
        }
    }
}

/// The closed-form reference.
pub struct RidgeReference {
    f: Arc<RidgeObjective>,
    gram: Matrix,
    atb: Vector,
    penalty: PenaltyMap,
}

impl RidgeReference {
    /// y*(x) and the Cholesky factor of H(x).
    fn solve(&self, x: &Vector) -> Result<(Vector, faer::linalg::solvers::Llt<f64>)> {
        let d = self.gram.nrows();
        let mut h = self.gram.clone();
        let mut lam = vec![0.0; d];
        self.penalty
            .for_each(x.as_slice(), d, |m, _, l, _| lam[m] = l);
        for j in 0..d {
            h[(j, j)] += lam[j];
        }
        let llt = h.llt(Side::Lower).map_err(|_| {
            Error::config(
                "x",
                "the inner Hessian AᵀA/n + diag λ is not positive definite (λ ≤ 0?)",
            )
        })?;
        Ok((llt.solve(&self.atb), llt))
    }
}

impl Reference for RidgeReference {
    fn evaluate(&self, x: &Vector) -> Result<ReferencePoint> {
        let (y, llt) = self.solve(x)?;
        let (dx, dy) = self.f.dims();
        let mut fy = Vector::zeros(dy);
        self.f.grad_y(x, &y, Batch::Full, &mut fy);
        let v = llt.solve(&fy);
        let mut grad = Vector::zeros(dx);
        let (ys, vs) = (y.as_slice(), v.as_slice());
        let gs = grad.as_mut_slice();
        self.penalty
            .for_each(x.as_slice(), dy, |m, k, _, dl| gs[k] -= dl * ys[m] * vs[m]);
        Ok(ReferencePoint {
            value: self.f.value(x, &y, Batch::Full),
            hypergradient: grad,
            y_star: Some(y),
        })
    }
}

/// `test_mse`: mean squared error of the current y on a fresh test set (n' samples).
struct TestMse(RidgeObjective);

impl TaskMetrics for TestMse {
    fn evaluate(&self, x: &Vector, y: &Vector) -> Vec<(String, f64)> {
        vec![("test_mse".into(), 2.0 * self.0.value(x, y, Batch::Full))]
    }
}

impl RidgeHpoConfig {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        check_at_least("n_train", self.n_train, 1)?;
        check_at_least("n_validation", self.n_validation, 1)?;
        check_at_least("dim", self.dim, 1)?;
        check_non_negative("noise", self.noise)?;
        if self.penalty == Penalty::PerClass {
            return Err(Error::config(
                "penalty",
                "`per_class` is not defined for regression",
            ));
        }
        if !self.x0.is_finite()
            || (self.parametrization == Parametrization::Linear && self.x0 <= 0.0)
        {
            return Err(Error::config(
                "x0",
                "must be finite (and > 0 with the linear parametrization)",
            ));
        }
        Ok(())
    }

    /// Draws the data and builds the problem.
    pub fn build(&self) -> Result<Problem> {
        self.validate()?;
        let d = self.dim;
        let mut rng = rng_from_seed(self.seed, 41);
        let w_true = normal_vector(&mut rng, d);
        let mut draw = |n: usize| {
            let values: Vec<f64> = (0..n * d).map(|_| standard_normal(&mut rng)).collect();
            let a = DenseMatrix::new(n, d, values).expect("invariant: n·d values");
            let b: Vec<f64> = (0..n)
                .map(|i| a.dot(i, w_true.as_slice()) + self.noise * standard_normal(&mut rng))
                .collect();
            (a, b)
        };
        let (a, b) = draw(self.n_train);
        let (av, bv) = draw(self.n_validation);
        let (at, bt) = draw(self.n_validation);
        let map = PenaltyMap::new(self.penalty, self.parametrization, 1);
        let dim_x = map.dim_x(d);
        let n = self.n_train as f64;
        let gram = Matrix::from_fn(d, d, |j, k| {
            (0..self.n_train)
                .map(|i| a.row(i)[j] * a.row(i)[k])
                .sum::<f64>()
                / n
        });
        let atb = Vector::from_fn(d, |j| {
            (0..self.n_train).map(|i| a.row(i)[j] * b[i]).sum::<f64>() / n
        });
        let g = Arc::new(RidgeObjective {
            a,
            b,
            penalty: Some(map),
            dim_x,
        });
        let f = Arc::new(RidgeObjective {
            a: av,
            b: bv,
            penalty: None,
            dim_x,
        });
        let reference = RidgeReference {
            f: f.clone(),
            gram,
            atb,
            penalty: map,
        };
        let test = RidgeObjective {
            a: at,
            b: bt,
            penalty: None,
            dim_x,
        };
        Problem::from_arcs("ridge_hpo", f, g)?
            .with_reference(reference)
            .with_task_metrics(TestMse(test))
            .with_start(Vector::from_fn(dim_x, |_| self.x0), Vector::zeros(d))
    }
}
