//! Pieces shared by the data-backed problems: row access over dense and sparse designs, batch
//! iteration, per-thread scratch buffers, numerically stable logistic functions, and the generic
//! high-accuracy [`NewtonReference`].

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::core::error::{Error, Result};
use crate::core::{Batch, Fused, Objective, Reference, ReferencePoint, Vector, VectorExt};
use crate::data::{CsrMatrix, DenseMatrix, Design};
use crate::linsolve::{CgParams, CgWorkspace, CurvaturePairs, pcg_in_place};
use faer::linalg::solvers::Solve as _;

/// Row access used by the per-row streaming loops of the least-squares oracles (the logistic
/// kernels have their own, in [`logistic`](super::logistic)).
pub(crate) trait Rows: Sync + Send {
    /// x_i · w.
    fn dot(&self, i: usize, w: &[f64]) -> f64;
    /// out ← out + α x_i.
    fn axpy(&self, i: usize, alpha: f64, out: &mut [f64]);
}

impl Rows for DenseMatrix {
    #[inline]
    fn dot(&self, i: usize, w: &[f64]) -> f64 {
        crate::core::linalg::dot(self.row(i), &w[..self.cols()])
    }
    #[inline]
    fn axpy(&self, i: usize, alpha: f64, out: &mut [f64]) {
        crate::core::linalg::axpy(alpha, self.row(i), &mut out[..self.cols()]);
    }
}

impl Rows for CsrMatrix {
    #[inline]
    fn dot(&self, i: usize, w: &[f64]) -> f64 {
        let (idx, val) = self.row(i);
        idx.iter().zip(val).map(|(&j, &v)| v * w[j as usize]).sum()
    }
    #[inline]
    fn axpy(&self, i: usize, alpha: f64, out: &mut [f64]) {
        let (idx, val) = self.row(i);
        for (&j, &v) in idx.iter().zip(val) {
            out[j as usize] += alpha * v;
        }
    }
}

/// Calls `f(i)` for each sample of the batch (each repeat counted) and returns 1/|batch|.
#[inline]
pub(crate) fn for_each_sample(batch: Batch<'_>, n: usize, mut f: impl FnMut(usize)) -> f64 {
    match batch {
        Batch::Full => {
            for i in 0..n {
                f(i);
            }
            1.0 / n.max(1) as f64
        }
        Batch::Indices(idx) => {
            for &i in idx {
                f(i);
            }
            1.0 / idx.len().max(1) as f64
        }
    }
}

/// Checks a batch against n samples.
#[track_caller]
pub(crate) fn check_batch(batch: Batch<'_>, n: usize, what: &str) {
    if let Batch::Indices(idx) = batch {
        assert!(!idx.is_empty(), "{what}: empty minibatch");
        assert!(
            idx.iter().all(|&i| i < n),
            "{what}: sample index out of range (n = {n})"
        );
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
    static NATIVE_SCRATCH: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with a zeroed per-thread scratch slice of length `len`. The buffer is kept between
/// calls, so steady-state oracle calls do not allocate. Not reentrant (oracles do not nest).
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f64]) -> R) -> R {
    scratch_from(&SCRATCH, len, true, f)
}

/// [`with_scratch`] with a second per-thread buffer, **not zeroed** (it holds what the last
/// call left): for the model copies of a pass, which write every entry before use. Taken before
/// the SIMD dispatch so that the pass itself may still use [`with_scratch`]. Zeroing it cost a
/// memset of four model copies per minibatch call (400 KB on the hyper-cleaning shape).
pub(crate) fn with_native_scratch<R>(len: usize, f: impl FnOnce(&mut [f64]) -> R) -> R {
    scratch_from(&NATIVE_SCRATCH, len, false, f)
}

fn scratch_from<R>(
    key: &'static std::thread::LocalKey<RefCell<Vec<f64>>>,
    len: usize,
    zeroed: bool,
    f: impl FnOnce(&mut [f64]) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            let s = &mut buf[..len];
            if zeroed {
                s.fill(0.0);
            }
            f(s)
        }
        // Reentrant use (should not happen): fall back to a fresh buffer.
        Err(_) => f(&mut vec![0.0; len]),
    })
}

/// log(1 + eᵗ), stable for every t (the naive reference of the fused kernels' tests).
#[cfg(test)]
#[inline]
pub(crate) fn softplus(t: f64) -> f64 {
    if t > 0.0 {
        t + (-t).exp().ln_1p()
    } else {
        t.exp().ln_1p()
    }
}

/// σ(t) = 1 / (1 + e⁻ᵗ), stable for every t.
#[inline]
pub(crate) fn sigmoid(t: f64) -> f64 {
    if t >= 0.0 {
        1.0 / (1.0 + (-t).exp())
    } else {
        let e = t.exp();
        e / (1.0 + e)
    }
}

/// Softmax of `z` in place; returns log Σ exp(z).
#[inline]
pub(crate) fn softmax_in_place(z: &mut [f64]) -> f64 {
    let max = z.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let mut sum = 0.0;
    for v in z.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in z.iter_mut() {
        *v /= sum;
    }
    max + sum.ln()
}

/// Settings of the high-accuracy reference solve.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReferenceConfig {
    /// Attach the reference at all (it costs full-batch Newton solves at every evaluation).
    pub enabled: bool,
    /// Stop Newton when ‖∇ᵧg(x, y)‖ ≤ `tol` (absolute).
    pub tol: f64,
    /// Accept the solve when stagnation stops Newton below this gradient norm; fail above it.
    pub accept: f64,
    /// Newton iterations at most.
    pub max_newton: usize,
    /// Use the dense-Hessian path (Newton with Cholesky steps, a direct adjoint solve) when
    /// dim y is at most this and the inner objective provides a dense Hessian; 0: always
    /// Newton-CG with Hessian-vector products.
    pub dense_max: usize,
    /// From this dim y up, a warm quasi-Newton evaluation solves the adjoint by conjugate
    /// gradients preconditioned with the kept Hessian H₀ (exact Hessian-vector products at
    /// y*), and forms a new dense Hessian only when that takes more than
    /// [`ADJOINT_PCG_MAX_PRODUCTS`] products. A dense Hessian pass costs about dim y products
    /// (times the row density): at dim y = 385 (covtype's 7 classes) it is 95 % of an
    /// evaluation. Below, the exact Hessian at y* is formed as before.
    pub adjoint_pcg_min: usize,
    /// Precondition the conjugate-gradient solves of the Newton-CG path (the Newton steps and
    /// the adjoint) with the diagonal of ∇²ᵧᵧg (Jacobi), where the inner objective provides it
    /// (`logreg_hpo`, whose per-group λ the diagonal captures): one pass at the starting y, for
    /// the Newton steps and the adjoint (a warm start is near y*; computing it again at y* cost
    /// 5 % of a covtype evaluation and saved no product).
    pub jacobi: bool,
    /// Curvature pairs (p, ∇²ᵧᵧg·p) the Newton-CG path keeps from the products of its
    /// conjugate-gradient solves, to precondition the next ones (an L-BFGS inverse on the
    /// Jacobi diagonal, [`CurvaturePairs`]): the Newton steps of one evaluation, its adjoint and
    /// the next evaluation share most of their spectrum. At most [`RECYCLED_BYTES`] of memory
    /// (fewer pairs at large dim y: 267 at hyper-cleaning's dim y 7,850) and at most dim y;
    /// 0: none. A solve that does not converge with the pairs is resumed without them (and
    /// they are dropped), so stale pairs cost products, never an evaluation. A warm
    /// hyper-cleaning evaluation took 60 Hessian products without pairs, 49 with 20, 34 with 80
    /// and 23 with 160 (`benchmarks/NOTES.md`).
    pub recycled_pairs: usize,
}

/// Hessian-vector products the preconditioned adjoint solve may take before the warm dense
/// path forms the exact Hessian at y* instead (see [`ReferenceConfig::adjoint_pcg_min`]).
pub const ADJOINT_PCG_MAX_PRODUCTS: usize = 12;

impl Default for ReferenceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            tol: 1e-12,
            accept: 1e-7,
            max_newton: 60,
            dense_max: 512,
            adjoint_pcg_min: 128,
            jacobi: true,
            recycled_pairs: 320,
        }
    }
}

impl ReferenceConfig {
    /// Checks the settings, naming fields under `reference.`.
    pub fn validate(&self) -> Result<()> {
        crate::core::error::check_positive("reference.tol", self.tol)?;
        crate::core::error::check_positive("reference.accept", self.accept)?;
        crate::core::error::check_at_least("reference.max_newton", self.max_newton, 1)
    }
}

#[derive(Clone)]
struct Warm {
    x: Vector,
    y: Vector,
    v: Vector,
    point: Option<ReferencePoint>,
    /// The dense inner Hessian of the last dense-path solve (row-major), possibly from an
    /// earlier point than `y`: the chord steps and the adjoint preconditioner of the next
    /// evaluation.
    hess: Option<Vec<f64>>,
}

/// How many evaluations took each path of the dense reference (see [`NewtonReference`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReferencePaths {
    /// Quasi-Newton (chord + BFGS) steps from one Hessian — the previous evaluation's (warm) or
    /// the start point's (cold) — and a direct adjoint solve with the exact Hessian at y*.
    pub chord: usize,
    /// Newton with a fresh dense Hessian per step (when the quasi-Newton steps stalled).
    pub dense_newton: usize,
    /// Newton-CG with Hessian-vector products (no dense Hessian available).
    pub newton_cg: usize,
    /// Dense Newton failed from the warm start: damped Newton, then Newton-CG, from the cold
    /// start.
    pub fallback: usize,
    /// Of the `chord` evaluations: the adjoint solved by conjugate gradients preconditioned
    /// with H₀ (no dense Hessian formed; see [`ReferenceConfig::adjoint_pcg_min`]).
    pub chord_pcg: usize,
}

/// The exact bilevel quantities by high-accuracy solves on the full batch, for problems without
/// a closed form.
///
/// **Dense path** (dim y ≤ [`ReferenceConfig::dense_max`] and an inner objective with
/// [`Objective::value_grad_hess_yy`], e.g. binary logistic regression): Newton's method where one
/// parallel pass over the data gives g, ∇ᵧg and the dense ∇²ᵧᵧg at once, steps solve with the
/// Cholesky factor, the same line search as below, and the adjoint v = [∇²ᵧᵧg]⁻¹∇ᵧf is a direct
/// solve with the factor at y* plus one step of iterative refinement. Conjugate gradients would
/// need up to dim y Hessian products for the same accuracy.
///
/// **Newton-CG path** (otherwise): y*(x) by Newton's method with conjugate-gradient steps (inexact Newton, forcing
/// term min(0.1, ‖∇ᵧg‖^½), never tighter than 0.1 · tol / ‖∇ᵧg‖, so the final steps converge
/// superlinearly without solving below the tolerance) and a line search (Armijo on g, or a
/// halving of ‖∇ᵧg‖ once values stop resolving), then v = [∇²ᵧᵧg]⁻¹∇ᵧf by CG to relative
/// residual 1e-13 (at most 10·dim y iterations, clamped to [200, 5000]; a residual above 1e-6
/// is an error), and ∇F = ∇ₓf − ∇²ₓᵧg·v, F = f(x, y*). Every solve is preconditioned with the
/// curvature pairs of the products of the solves before it ([`ReferenceConfig::recycled_pairs`]),
/// on the Jacobi diagonal where the objective gives one.
///
/// **Quasi-Newton dense path** (tried first whenever a dense Hessian is available): a Hessian H₀
/// stands in for the current one — the previous evaluation's exact Hessian at its y* when warm
/// (consecutive evaluation points of a run are close), else one computed at the start point.
/// When warm, a first-order predictor moves y to y − H₀⁻¹∇²ᵧₓg·(x − x_prev). Then steps
/// y ← y − H₀⁻¹∇ᵧg(x, y), with a BFGS secant update of H₀ after each, need one gradient pass
/// each instead of a Hessian pass; each must halve ‖∇ᵧg‖, otherwise the evaluation falls back
/// to dense Newton from where it stands (a stale H₀ is detected, never trusted). The step
/// expected to reach the tolerance (from the last step's rate) computes the exact Hessian in
/// the same pass as its gradient; the adjoint is then a direct solve with that Hessian at y*
/// plus one step of iterative refinement (one pass over the data, where conjugate gradients
/// would take several Hessian-vector products), and the Hessian is kept as the next H₀. The
/// stopping rules are those of the other paths, so the result is as exact; only the work
/// differs ([`NewtonReference::paths`] counts which path ran). From dim y =
/// [`ReferenceConfig::adjoint_pcg_min`] up, a dense Hessian pass costs more than the
/// Hessian-vector products a well-preconditioned solve needs: the steps stop computing the
/// exact Hessian, and the adjoint is solved by conjugate gradients preconditioned with H₀ (to
/// relative residual 1e-12); only when that does not converge within
/// [`ADJOINT_PCG_MAX_PRODUCTS`] products is the exact Hessian formed at y* (and kept as H₀).
///
/// Warm start: the last y* and v are kept (behind a mutex, per problem instance) and start the
/// next evaluation; the last point is cached, so evaluating the same x twice costs nothing.
/// Results agree with a cold start to the solve tolerance, not bit for bit.
///
/// Attach it with [`Problem::with_newton_reference`](crate::core::Problem::with_newton_reference)
/// (the example on [`Objective`] shows it on a user problem), or build it on any pair of
/// objectives:
///
/// ```
/// use bilevel::core::Reference;
/// use bilevel::prelude::*;
/// use bilevel::problems::common::{NewtonReference, ReferenceConfig};
///
/// // The tiny quadratic has a closed-form reference; the generic solve agrees with it.
/// let problem = bilevel::problems::quadratic::tiny();
/// let (f, g) = problem.uncounted_objectives();
/// let newton = NewtonReference::new(f, g, problem.start().1, ReferenceConfig::default());
/// let x = bilevel::core::linalg::from_slice(&[0.3, -0.7]);
/// let exact = problem.reference().unwrap().evaluate(&x)?;
/// let solved = newton.evaluate(&x)?;
/// assert!((solved.value - exact.value).abs() < 1e-10);
/// assert!((&solved.hypergradient - &exact.hypergradient).norm() < 1e-8);
/// # Ok::<(), bilevel::Error>(())
/// ```
pub struct NewtonReference {
    f: Arc<dyn Objective>,
    g: Arc<dyn Objective>,
    config: ReferenceConfig,
    warm: Mutex<Option<Warm>>,
    y_init: Vector,
    paths: Mutex<ReferencePaths>,
    recycled: Mutex<Recycled>,
}

/// Curvature pairs (p, ∇²ᵧᵧg·p) of the conjugate-gradient products, kept from solve to solve:
/// they precondition the next solve (see [`CurvaturePairs`]).
struct Recycled {
    /// The pairs of earlier solves: the preconditioner (fixed during a solve).
    pairs: CurvaturePairs,
    /// The products of the solve under way, merged into `pairs` when it ends.
    staged: CurvaturePairs,
}

/// Memory the recycled curvature pairs may take (the kept pairs and those of the solve under
/// way: four vectors of dim y per pair): 64 MiB.
pub const RECYCLED_BYTES: usize = 64 << 20;

/// How far the Hessian may have moved along the newest kept pair, relative, before the pairs
/// are dropped ([`NewtonReference`]'s check at the start of a Newton-CG evaluation).
pub const RECYCLED_DRIFT: f64 = 0.1;

/// Pairs kept at dim y = `dim`: `wanted`, within [`RECYCLED_BYTES`], and at most `dim` (as
/// many conjugate pairs of one Hessian determine it).
fn recycled_capacity(wanted: usize, dim: usize) -> usize {
    wanted.min(RECYCLED_BYTES / (4 * 8 * dim.max(1))).min(dim)
}

impl crate::core::Problem {
    /// Attaches the generic exact reference ([`NewtonReference`]) on the problem's own
    /// (uncounted) objectives, starting its first inner solve from the problem's y₀: the
    /// metrics `value` (F(x)), `hypergrad_norm_sq` (‖∇F(x)‖²) and `inner_distance` then come
    /// with every evaluation, at the cost of a full-batch Newton solve each. `g` must be
    /// strongly convex in y. See [`Objective`] for an example.
    pub fn with_newton_reference(self, config: ReferenceConfig) -> Self {
        let (f, g) = self.uncounted_objectives();
        let y_init = self.start().1;
        self.with_reference(NewtonReference::new(f, g, y_init, config))
    }
}

impl NewtonReference {
    /// A reference for outer `f` and inner `g`, starting the first solve from `y_init`.
    pub fn new(
        f: Arc<dyn Objective>,
        g: Arc<dyn Objective>,
        y_init: Vector,
        config: ReferenceConfig,
    ) -> Self {
        let capacity = recycled_capacity(config.recycled_pairs, g.dims().1);
        Self {
            f,
            g,
            config,
            warm: Mutex::new(None),
            y_init,
            paths: Mutex::new(ReferencePaths::default()),
            recycled: Mutex::new(Recycled {
                pairs: CurvaturePairs::new(capacity),
                staged: CurvaturePairs::new(capacity),
            }),
        }
    }

    /// How many evaluations took each path so far.
    pub fn paths(&self) -> ReferencePaths {
        *self.paths.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count_path(&self, which: impl FnOnce(&mut ReferencePaths) -> &mut usize) {
        *which(&mut self.paths.lock().unwrap_or_else(|p| p.into_inner())) += 1;
    }

    /// F = f(x, y), ∇ₓf and ∇ᵧf on the full outer data, in one fused pass.
    fn outer_pass(&self, x: &Vector, y: &Vector) -> (f64, Vector, Vector) {
        let (dx, dy) = self.f.dims();
        let (mut fx, mut fy) = (Vector::zeros(dx), Vector::zeros(dy));
        let mut value = 0.0;
        self.f.fused(
            x,
            y,
            None,
            Batch::Full,
            Fused {
                value: Some(&mut value),
                grad_x: Some(&mut fx),
                grad_y: Some(&mut fy),
                ..Fused::default()
            },
        );
        (value, fx, fy)
    }

    /// The point at y* with adjoint v: ∇F = ∇ₓf − ∇²ₓᵧg·v.
    fn assemble(
        &self,
        x: &Vector,
        y: Vector,
        v: &Vector,
        value: f64,
        mut fx: Vector,
    ) -> ReferencePoint {
        let mut cross = Vector::zeros(fx.nrows());
        self.g.cross_xy(x, &y, v, Batch::Full, &mut cross);
        fx.axpy(-1.0, &cross);
        ReferencePoint {
            value,
            hypergradient: fx,
            y_star: Some(y),
        }
    }

    /// ∇²ᵧᵧg(x, y) as a dense row-major matrix, when dim y is within the dense limit and the
    /// inner objective provides it.
    fn dense_hessian(&self, x: &Vector, y: &Vector) -> Result<Option<Vec<f64>>> {
        let dy = y.nrows();
        if dy > self.config.dense_max {
            return Ok(None);
        }
        let mut grad = Vector::zeros(dy);
        let mut hess = vec![0.0; dy * dy];
        Ok(self
            .g
            .value_grad_hess_yy(x, y, Batch::Full, &mut grad, &mut hess)
            .map(|_| hess))
    }

    /// The warm dense path: quasi-Newton steps from the Hessian `h0` (the previous evaluation's
    /// exact Hessian, or the start point's), then the adjoint by a direct solve with the exact
    /// Hessian at y*, which also becomes `h0` for the next evaluation. `None` when a step fails
    /// to halve ‖∇ᵧg‖ or a Hessian is not positive definite: the caller falls back to dense
    /// Newton from the returned `y` (as far as the steps got).
    fn dense_warm(
        &self,
        x: &Vector,
        x_prev: Option<&Vector>,
        y: &mut Vector,
        h0: &mut [f64],
    ) -> Result<Option<(ReferencePoint, Vector)>> {
        let dy = self.g.dims().1;
        let g = &*self.g;
        let mut llt = cholesky(h0, dy)?;
        // Warm: a first-order predictor of y*(x) from the last point (implicit function
        // theorem), y ← y − H₀⁻¹ ∇²ᵧₓg·(x − x_prev); the steps below correct it.
        if let Some(x_prev) = x_prev {
            let mut u = x.clone();
            u.axpy(-1.0, x_prev);
            let mut c = Vector::zeros(dy);
            g.cross_yx(x, y, &u, Batch::Full, &mut c);
            let mut predicted = y.clone();
            predicted.axpy(-1.0, &llt.solve(&c));
            if predicted.as_slice().iter().all(|p| p.is_finite()) {
                *y = predicted;
            }
        }
        let mut hs = vec![0.0; dy];
        let mut grad = Vector::zeros(dy);
        let mut trial = Vector::zeros(dy);
        let mut trial_grad = Vector::zeros(dy);
        // Whether `h0` (and `llt`) is the exact Hessian at y: the pass that computed ∇ᵧg(y)
        // also computed it.
        let mut exact_at_y = false;
        let mut trial_hess = vec![0.0; dy * dy];
        g.grad_y(x, y, Batch::Full, &mut grad);
        let mut gnorm = grad.norm();
        // ‖∇ᵧg‖ shrinks by about this factor per step (the last step's; none measured yet).
        let mut rate = 1.0;
        let mut steps = 0;
        let pcg_adjoint = dy >= self.config.adjoint_pcg_min;
        while gnorm > self.config.tol {
            if steps == self.config.max_newton || !gnorm.is_finite() {
                return Ok(None);
            }
            steps += 1;
            let step = llt.solve(&grad);
            trial.assign(y);
            trial.axpy(-1.0, &step);
            // A step expected to converge computes the exact Hessian in the same pass as the
            // gradient: the adjoint solve below needs it at y*, and a pass that computes both
            // costs less than two passes.
            let tn = if !pcg_adjoint && gnorm * rate <= self.config.tol {
                let fused = g
                    .value_grad_hess_yy(x, &trial, Batch::Full, &mut trial_grad, &mut trial_hess)
                    .is_some();
                if !fused {
                    g.grad_y(x, &trial, Batch::Full, &mut trial_grad);
                }
                let tn = trial_grad.norm();
                if !(tn.is_finite() && tn <= 0.5 * gnorm) {
                    return Ok(None);
                }
                if fused {
                    // Exact Hessian at the new point: the next step (if any) is a Newton step.
                    let Ok(factor) = cholesky(&trial_hess, dy) else {
                        return Ok(None);
                    };
                    llt = factor;
                    h0.copy_from_slice(&trial_hess);
                    exact_at_y = true;
                }
                tn
            } else {
                g.grad_y(x, &trial, Batch::Full, &mut trial_grad);
                let tn = trial_grad.norm();
                if !(tn.is_finite() && tn <= 0.5 * gnorm) {
                    return Ok(None);
                }
                self.bfgs_update(h0, &mut llt, &mut hs, &step, &grad, &trial_grad);
                exact_at_y = false;
                tn
            };
            rate = tn / gnorm;
            std::mem::swap(y, &mut trial);
            std::mem::swap(&mut grad, &mut trial_grad);
            gnorm = tn;
        }
        // Adjoint: a direct solve with the exact Hessian at y* (one pass over the data, or none
        // when the last step computed it; cheaper than the handful of Hessian-vector products
        // preconditioned CG would take), plus one step of iterative refinement. The exact
        // Hessian replaces the quasi-Newton H₀ as the next evaluation's starting Hessian.
        // The outer pass at y*, kept when the preconditioned solve below fails over to the
        // exact Hessian (it does not depend on the Hessian).
        let mut outer = None;
        if pcg_adjoint && !exact_at_y {
            let (value, fx, fy) = self.outer_pass(x, y);
            let mut v = llt.solve(&fy);
            let mut ws = CgWorkspace::new(dy);
            let info = pcg_in_place(
                |p, out| g.hvp_yy(x, y, p, Batch::Full, out),
                |r, z| z.copy_from(llt.solve(r)),
                &fy,
                &mut v,
                &CgParams {
                    max_iters: ADJOINT_PCG_MAX_PRODUCTS,
                    rel_tol: 1e-12,
                },
                &mut ws,
            );
            if info.converged {
                self.count_path(|p| &mut p.chord_pcg);
                return Ok(Some((self.assemble(x, y.clone(), &v, value, fx), v)));
            }
            outer = Some((value, fx, fy));
        }
        if !exact_at_y {
            let Some(hess) = self.dense_hessian(x, y)? else {
                return Ok(None);
            };
            let Ok(factor) = cholesky(&hess, dy) else {
                return Ok(None);
            };
            h0.copy_from_slice(&hess);
            llt = factor;
        }
        let (value, fx, fy) = outer.unwrap_or_else(|| self.outer_pass(x, y));
        let v = refined_solve(&llt, h0, &fy);
        Ok(Some((self.assemble(x, y.clone(), &v, value, fx), v)))
    }

    /// BFGS update of H₀ (and its factor) with the secant pair (s, Δ) = (−step, ∇g(trial) −
    /// ∇g(y)): the chord steps become quasi-Newton steps (superlinear). Skipped when the
    /// curvature sᵀΔ is not safely positive or the update is not positive definite (then H₀
    /// stays as it was).
    fn bfgs_update(
        &self,
        h0: &mut [f64],
        llt: &mut faer::linalg::solvers::Llt<f64>,
        hs: &mut [f64],
        step: &Vector,
        grad: &Vector,
        trial_grad: &Vector,
    ) {
        let dy = step.nrows();
        let mut delta = trial_grad.clone();
        delta.axpy(-1.0, grad);
        let s_dot_delta = -step.dot(&delta);
        for (i, o) in hs.iter_mut().enumerate() {
            *o = -crate::core::linalg::dot(&h0[i * dy..(i + 1) * dy], step.as_slice());
        }
        let s_h_s = -crate::core::linalg::dot(hs, step.as_slice());
        if s_dot_delta > 1e-10 * step.norm() * delta.norm() && s_h_s > 0.0 {
            let dl = delta.as_slice();
            let mut updated = h0.to_vec();
            for i in 0..dy {
                for j in 0..dy {
                    updated[i * dy + j] += dl[i] * dl[j] / s_dot_delta - hs[i] * hs[j] / s_h_s;
                }
            }
            if let Ok(factor) = cholesky(&updated, dy) {
                h0.copy_from_slice(&updated);
                *llt = factor;
            }
        }
    }

    /// The relative tolerance of a Newton-CG step at ‖∇ᵧg‖ = `gnorm` towards ‖∇ᵧg‖ ≤ `tol`:
    /// min(0.1, ‖∇ᵧg‖^½), loosened to 0.1 · tol / ‖∇ᵧg‖ where that is larger.
    fn forcing(gnorm: f64, tol: f64) -> f64 {
        gnorm.sqrt().min(0.1).max((0.1 * tol / gnorm).min(0.1))
    }

    fn cg_params(dim: usize, rel_tol: f64) -> CgParams {
        CgParams {
            max_iters: (10 * dim).clamp(200, 5000),
            rel_tol,
        }
    }

    /// The Jacobi preconditioner at (x, y): the inverse of the diagonal of ∇²ᵧᵧg, when
    /// [`ReferenceConfig::jacobi`] is set, the inner objective provides the diagonal, and every
    /// entry of it is positive and finite.
    fn jacobi_at(&self, x: &Vector, y: &Vector) -> Option<Vector> {
        if !self.config.jacobi {
            return None;
        }
        let mut diag = Vector::zeros(y.nrows());
        if !self.g.hess_yy_diag(x, y, Batch::Full, &mut diag) {
            return None;
        }
        let usable = diag.as_slice().iter().all(|&a| a.is_finite() && a > 0.0);
        usable.then(|| {
            for a in diag.as_mut_slice() {
                *a = 1.0 / *a;
            }
            diag
        })
    }

    /// CG on ∇²ᵧᵧg(x, y) · v = b from the current `v`, preconditioned with `jacobi` (the inverse
    /// diagonal) when given, with the products of [`Objective::hessian_yy_at`] where given.
    fn hessian_solve(
        &self,
        x: &Vector,
        y: &Vector,
        b: &Vector,
        v: &mut Vector,
        params: &CgParams,
        jacobi: Option<&Vector>,
        ws: &mut CgWorkspace,
    ) -> crate::linsolve::SolveInfo {
        let g = &*self.g;
        // The Hessian at y held for the whole solve where the objective can (each product then
        // costs about half a pass less), else one `hvp_yy` per product. Preconditioned by the
        // curvature pairs of the earlier solves (on the Jacobi diagonal where given); this
        // solve's products become pairs for the next.
        let held = g.hessian_yy_at(x, y);
        let mut recycled = self.recycled.lock().unwrap_or_else(|p| p.into_inner());
        let Recycled { pairs, staged } = &mut *recycled;
        staged.clear();
        let mut solve = |pairs: &mut CurvaturePairs, v: &mut Vector| {
            pcg_in_place(
                |p, out| {
                    match &held {
                        Some(product) => product(p, out),
                        None => g.hvp_yy(x, y, p, Batch::Full, out),
                    }
                    staged.push(p, out);
                },
                |r, z| pairs.apply(r, jacobi, z),
                b,
                v,
                params,
                ws,
            )
        };
        let mut info = solve(pairs, v);
        if !info.converged && !pairs.is_empty() {
            // Pairs from far-away points must not cost the solve: once more from where it
            // stopped, on the diagonal alone (the products of both attempts are kept).
            pairs.clear();
            let again = solve(pairs, v);
            info = crate::linsolve::SolveInfo {
                matvecs: info.matvecs + again.matvecs,
                ..again
            };
        }
        staged.drain_into(pairs);
        info
    }

    /// Drops the kept curvature pairs when the Hessian has moved away from them (a far jump in
    /// x): one product with the newest pair's direction at (x, y) must reproduce its recorded
    /// image to [`RECYCLED_DRIFT`] relative. Stale pairs would still give the right answer, but
    /// with more products than none (a jump of +1.5 in every entry of the covtype twin's x: 65
    /// products with the old pairs, 26 without). When they are dropped, the new product is kept
    /// as the first pair.
    fn check_recycled(&self, x: &Vector, y: &Vector) {
        let mut recycled = self.recycled.lock().unwrap_or_else(|p| p.into_inner());
        let Some((s, image)) = recycled.pairs.newest() else {
            return;
        };
        let (s, image) = (s.clone(), image.clone());
        let mut now = Vector::zeros(s.nrows());
        self.g.hvp_yy(x, y, &s, Batch::Full, &mut now);
        let moved: f64 = (now.as_slice().iter().zip(image.as_slice()))
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        let drift = moved.sqrt() / image.norm();
        // A NaN drift (a broken product) drops the pairs too.
        if drift.is_nan() || drift > RECYCLED_DRIFT {
            recycled.pairs.clear();
            recycled.pairs.push(&s, &now);
        }
    }

    /// y*(x) by Newton-CG from `y`, in place. Returns the final ‖∇ᵧg‖.
    pub fn solve_inner(&self, x: &Vector, y: &mut Vector) -> Result<f64> {
        let jacobi = self.jacobi_at(x, y);
        self.solve_inner_with(x, y, jacobi.as_ref())
    }

    /// [`solve_inner`](Self::solve_inner) with the Jacobi preconditioner `jacobi`.
    fn solve_inner_with(&self, x: &Vector, y: &mut Vector, jacobi: Option<&Vector>) -> Result<f64> {
        let g = &*self.g;
        let dy = y.nrows();
        let mut grad = Vector::zeros(dy);
        let mut trial = Vector::zeros(dy);
        let mut trial_grad = Vector::zeros(dy);
        let mut step = Vector::zeros(dy);
        let mut neg = Vector::zeros(dy);
        let mut ws = CgWorkspace::new(dy);
        // Value and gradient together: one pass where the objective fuses them.
        let value_grad = |at: &Vector, grad: &mut Vector| {
            let mut value = 0.0;
            g.fused(
                x,
                at,
                None,
                Batch::Full,
                Fused {
                    value: Some(&mut value),
                    grad_y: Some(grad),
                    ..Fused::default()
                },
            );
            value
        };
        let mut value = value_grad(y, &mut grad);
        let mut gnorm = grad.norm();
        let mut iters = 0;
        while gnorm > self.config.tol && iters < self.config.max_newton {
            iters += 1;
            neg.assign(&grad);
            neg.scale(-1.0);
            step.set_zero();
            // Forcing term min(0.1, ‖∇g‖^½): superlinear (order 1.5) with looser early solves
            // than min(0.1, ‖∇g‖) (hyper-cleaning's cold evaluation 0.93 → 0.82 s, warm ones
            // unchanged). Never tighter than what reaches the tolerance from here, with a
            // margin of 10: near y* the new gradient is the linear residual (the quadratic term
            // is of order ‖∇g‖²), so a tighter solve only buys digits below the tolerance.
            let params = Self::cg_params(dy, Self::forcing(gnorm, self.config.tol));
            self.hessian_solve(x, y, &neg, &mut step, &params, jacobi, &mut ws);
            let slope = grad.dot(&step);
            if slope.is_nan() || slope >= 0.0 {
                // Not a descent direction (CG broke down at once): use the gradient.
                step.assign(&neg);
            }
            let slope = grad.dot(&step);
            let mut t = 1.0;
            let mut accepted = false;
            for _ in 0..40 {
                trial.assign(y);
                trial.axpy(t, &step);
                let tv = value_grad(&trial, &mut trial_grad);
                let tn = trial_grad.norm();
                if tv.is_finite()
                    && tn.is_finite()
                    && (tv <= value + 1e-4 * t * slope || tn <= 0.5 * gnorm)
                {
                    accepted = true;
                    value = tv;
                    break;
                }
                t *= 0.5;
            }
            if !accepted {
                break; // stagnation: values and gradients no longer resolve
            }
            y.assign(&trial);
            grad.assign(&trial_grad);
            gnorm = grad.norm();
        }
        if gnorm.is_finite() && gnorm <= self.config.accept {
            Ok(gnorm)
        } else {
            Err(Error::NotConverged {
                what: "reference inner solve (Newton-CG)".into(),
                iters,
                rel_residual: gnorm,
            })
        }
    }

    /// The dense path; `None` when the inner objective has no dense Hessian (or dim y is above
    /// the limit).
    #[allow(clippy::type_complexity)]
    fn compute_dense(
        &self,
        x: &Vector,
        y: Vector,
    ) -> Result<Option<(ReferencePoint, Vector, Vec<f64>)>> {
        self.compute_dense_with(x, y, false, self.config.max_newton)
    }

    /// Dense Newton from `y`. With `monotone`, a step is accepted only when it decreases g
    /// (Armijo), or halves ‖∇ᵧg‖ where g no longer resolves (its change is at rounding level):
    /// a damped Newton method that converges from any start on a strongly convex g. Without
    /// it, a step that halves ‖∇ᵧg‖ is accepted even when g rises (fewer passes near y*).
    #[allow(clippy::type_complexity)]
    fn compute_dense_with(
        &self,
        x: &Vector,
        mut y: Vector,
        monotone: bool,
        max_newton: usize,
    ) -> Result<Option<(ReferencePoint, Vector, Vec<f64>)>> {
        let dy = self.g.dims().1;
        if dy > self.config.dense_max {
            return Ok(None);
        }
        let g = &*self.g;
        let mut grad = Vector::zeros(dy);
        let mut hess = vec![0.0; dy * dy];
        let Some(mut value) = g.value_grad_hess_yy(x, &y, Batch::Full, &mut grad, &mut hess) else {
            return Ok(None);
        };
        let mut trial = Vector::zeros(dy);
        let mut trial_grad = Vector::zeros(dy);
        let mut trial_hess = vec![0.0; dy * dy];
        let mut gnorm = grad.norm();
        let mut iters = 0;
        let llt = loop {
            let llt = cholesky(&hess, dy)?;
            if !(gnorm > self.config.tol && iters < max_newton) {
                break llt;
            }
            iters += 1;
            // Newton step: H s = −∇ᵧg.
            let mut step = llt.solve(&grad);
            step.scale(-1.0);
            let slope = grad.dot(&step);
            let mut t = 1.0;
            let mut accepted = None;
            for _ in 0..40 {
                trial.assign(&y);
                trial.axpy(t, &step);
                let tv = g
                    .value_grad_hess_yy(x, &trial, Batch::Full, &mut trial_grad, &mut trial_hess)
                    .expect("invariant: the objective provided a dense Hessian before");
                let tn = trial_grad.norm();
                let unresolved = (tv - value).abs() <= 1e-12 * value.abs().max(1.0);
                if tv.is_finite()
                    && tn.is_finite()
                    && (tv <= value + 1e-4 * t * slope
                        || (tn <= 0.5 * gnorm && (!monotone || unresolved)))
                {
                    accepted = Some(tv);
                    break;
                }
                t *= 0.5;
            }
            let Some(tv) = accepted else {
                break llt; // stagnation: values and gradients no longer resolve
            };
            value = tv;
            std::mem::swap(&mut y, &mut trial);
            std::mem::swap(&mut grad, &mut trial_grad);
            std::mem::swap(&mut hess, &mut trial_hess);
            gnorm = grad.norm();
        };
        if !(gnorm.is_finite() && gnorm <= self.config.accept) {
            return Err(Error::NotConverged {
                what: "reference inner solve (dense Newton)".into(),
                iters,
                rel_residual: gnorm,
            });
        }
        // `llt` factors the Hessian at the final y (refactored after the last accepted step).
        let llt = if iters > 0 { cholesky(&hess, dy)? } else { llt };
        let (value, fx, fy) = self.outer_pass(x, &y);
        let v = refined_solve(&llt, &hess, &fy);
        Ok(Some((self.assemble(x, y, &v, value, fx), v, hess)))
    }

    /// The evaluation at `x` from (y, v); returns the point, the adjoint and the Hessian to keep
    /// for the next warm evaluation (`None` off the dense path).
    #[allow(clippy::type_complexity)]
    fn compute(
        &self,
        x: &Vector,
        mut y: Vector,
        mut v: Vector,
        h0: Option<Vec<f64>>,
        x_prev: Option<Vector>,
    ) -> Result<(ReferencePoint, Vector, Option<Vec<f64>>)> {
        // Cold: one dense Hessian at the start point seeds the same quasi-Newton steps (one
        // Hessian pass instead of one per Newton step); dense Newton takes over if they stall.
        let (h0, x_prev) = match h0 {
            Some(h0) => (Some(h0), x_prev),
            None => (self.dense_hessian(x, &y)?, None),
        };
        if let Some(mut h0) = h0
            && let Some((point, v)) = self.dense_warm(x, x_prev.as_ref(), &mut y, &mut h0)?
        {
            self.count_path(|p| &mut p.chord);
            return Ok((point, v, Some(h0)));
        }
        let dense_failure = match self.compute_dense(x, y.clone()) {
            Ok(Some((point, v, hess))) => {
                self.count_path(|p| &mut p.dense_newton);
                return Ok((point, v, Some(hess)));
            }
            Ok(None) => None,
            Err(e) => Some(e),
        };
        let mut jacobi = None;
        if let Some(first) = dense_failure {
            // The warm start (or the acceptance of steps that raise g) can stall Newton far
            // from y*: start again from the cold start with damped (monotone) Newton, at most
            // max(4 · max_newton, 100) steps, then with Newton-CG. An evaluation fails only
            // when all of them do.
            self.count_path(|p| &mut p.fallback);
            let cold = self.y_init.clone();
            if let Ok(Some((point, v, hess))) = self.compute_dense_with(
                x,
                cold.clone(),
                true,
                (4 * self.config.max_newton).max(100),
            ) {
                return Ok((point, v, Some(hess)));
            }
            y = cold;
            v.set_zero();
            self.recycled
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pairs
                .clear();
            if self.solve_inner(x, &mut y).is_err() {
                return Err(first);
            }
        } else {
            self.count_path(|p| &mut p.newton_cg);
            self.check_recycled(x, &y);
            jacobi = self.jacobi_at(x, &y);
            self.solve_inner_with(x, &mut y, jacobi.as_ref())?;
        }
        let dy = self.g.dims().1;
        let (value, fx, fy) = self.outer_pass(x, &y);
        let mut ws = CgWorkspace::new(dy);
        // The diagonal of the Newton steps serves the adjoint too: a warm start is near y*.
        let jacobi = jacobi.or_else(|| self.jacobi_at(x, &y));
        let info = self.hessian_solve(
            x,
            &y,
            &fy,
            &mut v,
            &Self::cg_params(dy, 1e-13),
            jacobi.as_ref(),
            &mut ws,
        );
        if info.rel_residual.is_nan() || info.rel_residual > 1e-6 {
            return Err(Error::NotConverged {
                what: "reference linear system (CG)".into(),
                iters: info.matvecs,
                rel_residual: info.rel_residual,
            });
        }
        Ok((self.assemble(x, y, &v, value, fx), v, None))
    }
}

impl Reference for NewtonReference {
    fn evaluate(&self, x: &Vector) -> Result<ReferencePoint> {
        let (dx, dy) = self.g.dims();
        if x.nrows() != dx {
            return Err(Error::DimensionMismatch {
                what: "reference x".into(),
                expected: dx,
                found: x.nrows(),
            });
        }
        let start = {
            let guard = self.warm.lock().unwrap_or_else(|p| p.into_inner());
            match &*guard {
                Some(w) if w.x.as_slice() == x.as_slice() && w.point.is_some() => {
                    return Ok(w.point.clone().expect("invariant: checked is_some"));
                }
                Some(w) => (w.y.clone(), w.v.clone(), w.hess.clone(), Some(w.x.clone())),
                None => (self.y_init.clone(), Vector::zeros(dy), None, None),
            }
        };
        let (point, v, hess) = self.compute(x, start.0, start.1, start.2, start.3)?;
        let y = point
            .y_star
            .clone()
            .expect("invariant: compute sets y_star");
        let mut guard = self.warm.lock().unwrap_or_else(|p| p.into_inner());
        *guard = Some(Warm {
            x: x.clone(),
            y,
            v,
            point: Some(point.clone()),
            hess,
        });
        Ok(point)
    }
}

/// H⁻¹ b by the Cholesky factor of the row-major `hess`, with one step of iterative refinement
/// v ← v + H⁻¹(b − H v).
fn refined_solve(factor: &faer::linalg::solvers::Llt<f64>, hess: &[f64], b: &Vector) -> Vector {
    let n = b.nrows();
    let mut v = factor.solve(b);
    let mut r = b.clone();
    for (i, ri) in r.as_mut_slice().iter_mut().enumerate() {
        *ri -= crate::core::linalg::dot(&hess[i * n..(i + 1) * n], v.as_slice());
    }
    v.axpy(1.0, &factor.solve(&r));
    v
}

/// The Cholesky factor of a symmetric row-major `n × n` matrix; an error when it is not positive
/// definite.
fn cholesky(h: &[f64], n: usize) -> Result<faer::linalg::solvers::Llt<f64>> {
    let m = crate::core::Matrix::from_fn(n, n, |i, j| h[i * n + j]);
    m.llt(faer::Side::Lower).map_err(|_| Error::NotConverged {
        what: "reference inner solve (dense Newton): the inner Hessian is not positive definite"
            .into(),
        iters: 0,
        rel_residual: f64::NAN,
    })
}

/// How features are preprocessed (statistics from the training rows only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preprocess {
    /// As read.
    #[default]
    None,
    /// Per feature: centre and scale to unit variance (sparse designs: scale only).
    Standardize,
    /// Divide everything by the largest absolute training value (pixels 0–255 → [0, 1]).
    UnitMax,
}

impl Preprocess {
    /// Fits on `train` and applies to every design in `all` (which should include `train`).
    pub fn apply(self, train: &Design, all: &mut [&mut Design]) -> Result<()> {
        match self {
            Preprocess::None => Ok(()),
            Preprocess::Standardize => {
                let st = crate::data::split::Standardizer::fit(train);
                for d in all.iter_mut() {
                    st.apply(d)?;
                }
                Ok(())
            }
            Preprocess::UnitMax => {
                let m = train.max_abs();
                if m > 0.0 {
                    for d in all.iter_mut() {
                        d.scale(1.0 / m);
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_kernels() {
        assert!((softplus(0.0) - 2f64.ln()).abs() < 1e-15);
        assert_eq!(softplus(-800.0), 0.0);
        assert_eq!(softplus(800.0), 800.0);
        assert_eq!(sigmoid(-800.0), 0.0);
        assert_eq!(sigmoid(800.0), 1.0);
        let mut z = [1000.0, 1000.0];
        let lse = softmax_in_place(&mut z);
        assert_eq!(z, [0.5, 0.5]);
        assert!((lse - 1000.0 - 2f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn row_kernels_agree_between_dense_and_sparse() {
        let dense = DenseMatrix::new(2, 3, vec![1.0, 0.0, 2.0, 0.0, -1.0, 0.5]).unwrap();
        let sparse = CsrMatrix::new(
            2,
            3,
            vec![0, 2, 4],
            vec![0, 2, 1, 2],
            vec![1.0, 2.0, -1.0, 0.5],
        )
        .unwrap();
        let w: Vec<f64> = (0..6).map(|i| i as f64 * 0.5 - 1.0).collect();
        for i in 0..2 {
            assert_eq!(dense.dot(i, &w[..3]), sparse.dot(i, &w[..3]));
            let (mut od, mut os) = ([0.0; 3], [0.0; 3]);
            dense.axpy(i, -1.5, &mut od);
            sparse.axpy(i, -1.5, &mut os);
            assert_eq!(od, os);
        }
    }
}
