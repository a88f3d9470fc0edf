//! [`Problem`]: the outer and inner objectives behind oracle counters, plus optional ground truth.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::linalg::{Vector, VectorExt, fd};
use super::objective::{Batch, Fused, HessianOperator, Objective};

/// Calls of each oracle on one objective, and the samples they touched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OracleCounts {
    /// `value` calls.
    pub value: u64,
    /// `grad_x` calls (a fused `grad_xy` counts one here and one in `grad_y`; every fused call
    /// counts as the component calls it replaces).
    pub grad_x: u64,
    /// `grad_y` calls.
    pub grad_y: u64,
    /// `hvp_yy` calls.
    pub hvp_yy: u64,
    /// `cross_xy` calls.
    pub cross_xy: u64,
    /// `cross_yx` calls.
    pub cross_yx: u64,
    /// Samples touched, summed over all calls (a full batch touches every sample).
    pub samples: u64,
    /// Second-order products (∇²ᵧᵧh·v, ∇²ₓᵧh·v, ∇²ᵧₓh·u) that the objective left to the
    /// finite-difference defaults of [`Objective`]. Each is counted as the two gradient calls it
    /// makes (in `grad_x` or `grad_y`, and in `samples`), not as a product: what it costs.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fd_products: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl OracleCounts {
    /// Total oracle calls of every kind.
    pub fn calls(&self) -> u64 {
        self.value + self.grad_x + self.grad_y + self.hvp_yy + self.cross_xy + self.cross_yx
    }
    /// `self − earlier`, kind by kind (saturating).
    pub fn since(&self, earlier: &OracleCounts) -> OracleCounts {
        OracleCounts {
            value: self.value.saturating_sub(earlier.value),
            grad_x: self.grad_x.saturating_sub(earlier.grad_x),
            grad_y: self.grad_y.saturating_sub(earlier.grad_y),
            hvp_yy: self.hvp_yy.saturating_sub(earlier.hvp_yy),
            cross_xy: self.cross_xy.saturating_sub(earlier.cross_xy),
            cross_yx: self.cross_yx.saturating_sub(earlier.cross_yx),
            samples: self.samples.saturating_sub(earlier.samples),
            fd_products: self.fd_products.saturating_sub(earlier.fd_products),
        }
    }
}

/// Oracle counts of both objectives of a problem.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    /// Outer objective f.
    pub f: OracleCounts,
    /// Inner objective g.
    pub g: OracleCounts,
    /// Data rows drawn: the rows of every minibatch drawn from a
    /// [`MinibatchSampler`](super::MinibatchSampler) during a run, plus n for each full-batch
    /// pass (a full-batch call at a new point (x, y); further full-batch calls at the same point
    /// read the same rows, as several oracles on one minibatch do). It is the axis of the
    /// reference benchmark, which counts minibatch draws: SOBA draws 2 × 64 rows per iteration,
    /// where `samples` counts every oracle component (5 × 64). Counted by the
    /// [`Runner`](crate::run::Runner); a solver driven by hand counts only its full passes.
    /// (Absent in JSON when 0: checkpoints written before it existed keep their checksum.)
    #[serde(default, skip_serializing_if = "is_zero")]
    pub draws: u64,
}

impl Counts {
    /// All oracle calls on f and g.
    pub fn calls(&self) -> u64 {
        self.f.calls() + self.g.calls()
    }
    /// All samples touched on f and g.
    pub fn samples(&self) -> u64 {
        self.f.samples + self.g.samples
    }
    /// `self − earlier`.
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            f: self.f.since(&earlier.f),
            g: self.g.since(&earlier.g),
            draws: self.draws.saturating_sub(earlier.draws),
        }
    }
}

#[derive(Default)]
struct AtomicCounts {
    value: AtomicU64,
    grad_x: AtomicU64,
    grad_y: AtomicU64,
    hvp_yy: AtomicU64,
    cross_xy: AtomicU64,
    cross_yx: AtomicU64,
    samples: AtomicU64,
    fd_products: AtomicU64,
}

impl AtomicCounts {
    fn load(&self) -> OracleCounts {
        OracleCounts {
            value: self.value.load(Relaxed),
            grad_x: self.grad_x.load(Relaxed),
            grad_y: self.grad_y.load(Relaxed),
            hvp_yy: self.hvp_yy.load(Relaxed),
            cross_xy: self.cross_xy.load(Relaxed),
            cross_yx: self.cross_yx.load(Relaxed),
            samples: self.samples.load(Relaxed),
            fd_products: self.fd_products.load(Relaxed),
        }
    }
    fn store(&self, c: &OracleCounts) {
        self.value.store(c.value, Relaxed);
        self.grad_x.store(c.grad_x, Relaxed);
        self.grad_y.store(c.grad_y, Relaxed);
        self.hvp_yy.store(c.hvp_yy, Relaxed);
        self.cross_xy.store(c.cross_xy, Relaxed);
        self.cross_yx.store(c.cross_yx, Relaxed);
        self.samples.store(c.samples, Relaxed);
        self.fd_products.store(c.fd_products, Relaxed);
    }
}

/// An objective behind relaxed atomic counters. Algorithms only ever see this wrapper, so no
/// oracle call escapes the count.
struct Counted {
    inner: Arc<dyn Objective>,
    counts: AtomicCounts,
    n_samples: usize,
    /// Rows read by full-batch passes (n per pass; see [`Counts::draws`]).
    full_rows: AtomicU64,
    /// A fingerprint of the point (x, y) of the last full-batch call.
    last_full_point: AtomicU64,
}

/// No full-batch call yet.
const NO_POINT: u64 = u64::MAX;

/// A fingerprint of (x, y): equal points give equal fingerprints; different points collide with
/// probability about 2⁻⁶⁴.
fn point_fingerprint(x: &Vector, y: &Vector) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in x.as_slice().iter().chain(y.as_slice()) {
        h = (h ^ v.to_bits()).wrapping_mul(0x0000_0100_0000_01b3);
        h ^= h >> 29;
    }
    h ^ (x.nrows() as u64).rotate_left(32)
}

impl Counted {
    fn new(inner: Arc<dyn Objective>) -> Self {
        let n_samples = inner.n_samples();
        Self {
            inner,
            counts: AtomicCounts::default(),
            n_samples,
            full_rows: AtomicU64::new(0),
            last_full_point: AtomicU64::new(NO_POINT),
        }
    }
    /// Counts one call of `counter` on `batch`.
    #[inline]
    fn touch(&self, counter: &AtomicU64, batch: Batch<'_>) {
        counter.fetch_add(1, Relaxed);
        self.counts
            .samples
            .fetch_add(batch.len(self.n_samples) as u64, Relaxed);
    }
    /// Notes the rows one oracle call reads at (x, y): a full-batch call at a new point is a
    /// pass over the n rows (see [`Counts::draws`]). Called once per call, whatever it computes.
    #[inline]
    fn read(&self, batch: Batch<'_>, x: &Vector, y: &Vector) {
        if matches!(batch, Batch::Full) {
            let point = point_fingerprint(x, y);
            if self.last_full_point.swap(point, Relaxed) != point {
                self.full_rows.fetch_add(self.n_samples as u64, Relaxed);
            }
        }
    }
    /// Runs `call` (a second-order product `kind`, or a fused call with products) and counts the
    /// products it asked for: as products when the objective computed them, or as the gradient
    /// calls they made when they fell back to the finite-difference defaults.
    #[inline]
    fn products<R>(
        &self,
        requested: [Option<(&AtomicU64, FdKind)>; 2],
        batch: Batch<'_>,
        call: impl FnOnce() -> R,
    ) -> R {
        let before = fd::gradients_spent();
        let result = call();
        let (spent_x, spent_y) = fd::gradients_spent().since(before);
        for (counter, kind) in requested.into_iter().flatten() {
            let spent = match kind {
                FdKind::GradX => spent_x,
                FdKind::GradY => spent_y,
            };
            if spent == 0 {
                self.touch(counter, batch);
            } else {
                self.counts.fd_products.fetch_add(1, Relaxed);
                let gradient = match kind {
                    FdKind::GradX => &self.counts.grad_x,
                    FdKind::GradY => &self.counts.grad_y,
                };
                for _ in 0..spent {
                    self.touch(gradient, batch);
                }
            }
        }
        result
    }
    fn load(&self) -> OracleCounts {
        self.counts.load()
    }
    fn store(&self, counts: &OracleCounts) {
        self.counts.store(counts);
        self.full_rows.store(0, Relaxed);
        self.last_full_point.store(NO_POINT, Relaxed);
    }
}

/// Which gradient a finite-difference product differentiates.
#[derive(Clone, Copy)]
enum FdKind {
    GradX,
    GradY,
}

impl Objective for Counted {
    fn dims(&self) -> (usize, usize) {
        self.inner.dims()
    }
    fn n_samples(&self) -> usize {
        self.n_samples
    }
    fn value(&self, x: &Vector, y: &Vector, batch: Batch<'_>) -> f64 {
        self.read(batch, x, y);
        self.touch(&self.counts.value, batch);
        self.inner.value(x, y, batch)
    }
    fn grad_x(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        self.read(batch, x, y);
        self.touch(&self.counts.grad_x, batch);
        self.inner.grad_x(x, y, batch, out)
    }
    fn grad_y(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        self.read(batch, x, y);
        self.touch(&self.counts.grad_y, batch);
        self.inner.grad_y(x, y, batch, out)
    }
    fn grad_xy(
        &self,
        x: &Vector,
        y: &Vector,
        batch: Batch<'_>,
        out_x: &mut Vector,
        out_y: &mut Vector,
    ) {
        self.read(batch, x, y);
        self.touch(&self.counts.grad_x, batch);
        self.touch(&self.counts.grad_y, batch);
        self.inner.grad_xy(x, y, batch, out_x, out_y)
    }
    fn fused(&self, x: &Vector, y: &Vector, v: Option<&Vector>, batch: Batch<'_>, out: Fused<'_>) {
        self.read(batch, x, y);
        // Counted as the component calls it replaces.
        let c = &self.counts;
        for (given, counter) in [
            (out.value.is_some(), &c.value),
            (out.grad_x.is_some(), &c.grad_x),
            (out.grad_y.is_some(), &c.grad_y),
        ] {
            if given {
                self.touch(counter, batch);
            }
        }
        let requested = [
            out.hvp_yy.is_some().then_some((&c.hvp_yy, FdKind::GradY)),
            out.cross_xy
                .is_some()
                .then_some((&c.cross_xy, FdKind::GradX)),
        ];
        self.products(requested, batch, || self.inner.fused(x, y, v, batch, out))
    }
    fn value_grad_hess_yy(
        &self,
        x: &Vector,
        y: &Vector,
        batch: Batch<'_>,
        grad: &mut Vector,
        hess: &mut [f64],
    ) -> Option<f64> {
        let value = self.inner.value_grad_hess_yy(x, y, batch, grad, hess)?;
        // Counted as a value, a gradient and dim y Hessian-vector products (one per column).
        self.read(batch, x, y);
        self.touch(&self.counts.value, batch);
        self.touch(&self.counts.grad_y, batch);
        for _ in 0..y.nrows() {
            self.touch(&self.counts.hvp_yy, batch);
        }
        Some(value)
    }
    fn hess_yy_diag(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) -> bool {
        let given = self.inner.hess_yy_diag(x, y, batch, out);
        if given {
            // One pass over the batch, counted as one Hessian-vector product.
            self.read(batch, x, y);
            self.touch(&self.counts.hvp_yy, batch);
        }
        given
    }
    fn hessian_yy_at<'a>(&'a self, x: &'a Vector, y: &'a Vector) -> Option<HessianOperator<'a>> {
        let product = self.inner.hessian_yy_at(x, y)?;
        // The preparation is one pass over the data, counted as one Hessian-vector product;
        // each product is one more.
        self.read(Batch::Full, x, y);
        self.touch(&self.counts.hvp_yy, Batch::Full);
        Some(Box::new(move |v: &Vector, out: &mut Vector| {
            self.read(Batch::Full, x, y);
            self.touch(&self.counts.hvp_yy, Batch::Full);
            product(v, out);
        }))
    }
    fn hvp_yy(&self, x: &Vector, y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        self.read(batch, x, y);
        let requested = [Some((&self.counts.hvp_yy, FdKind::GradY)), None];
        self.products(requested, batch, || self.inner.hvp_yy(x, y, v, batch, out))
    }
    fn cross_xy(&self, x: &Vector, y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        self.read(batch, x, y);
        let requested = [Some((&self.counts.cross_xy, FdKind::GradX)), None];
        self.products(requested, batch, || {
            self.inner.cross_xy(x, y, v, batch, out)
        })
    }
    fn cross_yx(&self, x: &Vector, y: &Vector, u: &Vector, batch: Batch<'_>, out: &mut Vector) {
        self.read(batch, x, y);
        let requested = [Some((&self.counts.cross_yx, FdKind::GradY)), None];
        self.products(requested, batch, || {
            self.inner.cross_yx(x, y, u, batch, out)
        })
    }
}

/// The exact quantities of the bilevel problem at one outer point.
#[derive(Clone, Debug)]
pub struct ReferencePoint {
    /// F(x) = f(x, y*(x)).
    pub value: f64,
    /// ∇F(x).
    pub hypergradient: Vector,
    /// y*(x), when the problem has a unique inner solution to compare against.
    pub y_star: Option<Vector>,
}

/// Ground truth for metrics and tests: a closed form or a high-accuracy solve.
///
/// Most problems attach the generic high-accuracy solve with
/// [`Problem::with_newton_reference`]. A closed form, when there is one, is exact and cheap:
///
/// ```
/// use bilevel::core::{ReferencePoint, linalg};
/// use bilevel::prelude::*;
///
/// /// g(x, y) = ½‖y − x‖² (so y*(x) = x) and f(x, y) = ½‖y − 1‖²: F(x) = ½‖x − 1‖².
/// struct Inner;
/// struct Outer;
/// impl Objective for Inner {
///     fn dims(&self) -> (usize, usize) { (3, 3) }
///     fn value(&self, x: &Vector, y: &Vector, _: Batch<'_>) -> f64 { 0.5 * (y - x).norm_sq() }
///     fn grad_x(&self, x: &Vector, y: &Vector, _: Batch<'_>, out: &mut Vector) { *out = x - y; }
///     fn grad_y(&self, x: &Vector, y: &Vector, _: Batch<'_>, out: &mut Vector) { *out = y - x; }
/// }
/// impl Objective for Outer {
///     fn dims(&self) -> (usize, usize) { (3, 3) }
///     fn value(&self, _: &Vector, y: &Vector, _: Batch<'_>) -> f64 {
///         0.5 * (y - linalg::constant(3, 1.0)).norm_sq()
///     }
///     fn grad_x(&self, _: &Vector, _: &Vector, _: Batch<'_>, out: &mut Vector) { out.set_zero(); }
///     fn grad_y(&self, _: &Vector, y: &Vector, _: Batch<'_>, out: &mut Vector) {
///         *out = y - linalg::constant(3, 1.0);
///     }
/// }
///
/// struct ClosedForm;
/// impl Reference for ClosedForm {
///     fn evaluate(&self, x: &Vector) -> bilevel::Result<ReferencePoint> {
///         let hypergradient = x - linalg::constant(3, 1.0);
///         Ok(ReferencePoint {
///             value: 0.5 * hypergradient.norm_sq(),
///             hypergradient,
///             y_star: Some(x.clone()),
///         })
///     }
///     fn optimal_value(&self) -> Option<f64> {
///         Some(0.0) // gives the `suboptimality` metric
///     }
/// }
///
/// let problem = Problem::new("shift", Outer, Inner)?.with_reference(ClosedForm);
/// let metrics = problem.metrics(&linalg::constant(3, 3.0), &linalg::constant(3, 3.0), None)?;
/// assert_eq!(metrics["value"], 6.0); // ½ · 3 · (3 − 1)²
/// assert_eq!(metrics["hypergrad_norm_sq"], 12.0);
/// assert_eq!(metrics["inner_distance"], 0.0);
/// # Ok::<(), bilevel::Error>(())
/// ```
pub trait Reference: Send + Sync {
    /// F(x), ∇F(x) and y*(x).
    fn evaluate(&self, x: &Vector) -> Result<ReferencePoint>;
    /// F* = min F, when known (gives the `suboptimality` metric).
    fn optimal_value(&self) -> Option<f64> {
        None
    }
}

/// Problem-specific metrics at an evaluation point (test accuracy, flagged fraction, …).
pub trait TaskMetrics: Send + Sync {
    /// Named values at (x, y). Names must not clash with the runner's own metrics.
    fn evaluate(&self, x: &Vector, y: &Vector) -> Vec<(String, f64)>;
}

/// The inner loop that *defines* an approximate ("unrolled", MAML-type) bilevel problem
/// (algorithms.md §7.1): θ₀ = x, θ_{j+1} = θ_j − α ∇ᵧg(θ_j; task), j < r, and the outer loss is
/// f at θ_r. On such a problem the batch indices of g and f select tasks.
///
/// The contract of an unrolled problem (checked by the meta solvers where it can be):
/// - dim x = dim y (x is the meta-parameter φ, y the adapted parameters θ);
/// - g and f have one sample per task (the same number), and `Batch::Indices(&[j])` of g is task
///   j's support (inner) loss l_j, of f its query (outer) loss;
/// - f and g depend on y only: x is passed through but ignored (∇ₓ = 0), so that the meta
///   objective is M(φ) = mean_j f_j(θ_r^j(φ)).
///
/// `head` names the head coordinates of a model with a head/body split. Only ANIL reads it (it
/// adapts the head alone); MAML, FO-MAML, UFO-BLO and Reptile adapt every coordinate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnrolledSpec {
    /// r, the number of inner steps.
    pub steps: usize,
    /// α, the inner step size.
    pub lr: f64,
    /// The head coordinates (ANIL adapts only these); `None`: no head/body split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<HeadRange>,
}

impl UnrolledSpec {
    /// r steps of size α, no head/body split.
    pub const fn new(steps: usize, lr: f64) -> Self {
        Self {
            steps,
            lr,
            head: None,
        }
    }
    /// The same loop with the head coordinates `head` declared.
    pub const fn with_head(mut self, head: HeadRange) -> Self {
        self.head = Some(head);
        self
    }
}

/// A half-open coordinate range `start..end` of the parameter vector (the head of a model).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadRange {
    /// First coordinate.
    pub start: usize,
    /// One past the last coordinate.
    pub end: usize,
}

impl HeadRange {
    /// As a `Range`.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.end
    }
    /// Number of coordinates.
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }
    /// True when the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Named metric values, in a deterministic order.
pub type Metrics = BTreeMap<String, f64>;

/// min_x F(x) = f(x, y*(x))  s.t.  y*(x) = argmin_y g(x, y).
///
/// Every oracle call through [`f`](Self::f) and [`g`](Self::g) is counted; metrics
/// ([`metrics`](Self::metrics)) use the uncounted objectives, so evaluation never pollutes the
/// counts. A [`Runner`](crate::run::Runner) resets the counts at the start of each run.
///
/// Build one from two [`Objective`]s ([`new`](Self::new); see [`Objective`] for a whole
/// example), or a built-in one from its configuration ([`ProblemConfig`](crate::problems::ProblemConfig)).
///
/// ```
/// use bilevel::prelude::*;
///
/// let problem = bilevel::problems::quadratic::tiny();
/// assert_eq!(problem.dims(), (2, 3));
/// let (x, y) = problem.start();
/// let mut grad = Vector::zeros(3);
/// problem.g().grad_y(&x, &y, Batch::Indices(&[0, 2]), &mut grad);
/// problem.f().grad_y(&x, &y, Batch::Full, &mut grad);
/// let counts = problem.counts();
/// assert_eq!((counts.g.grad_y, counts.g.samples), (1, 2));
/// assert_eq!((counts.f.grad_y, counts.f.samples), (1, 2)); // f has two samples
/// // Metrics do not count; the tiny quadratic has an exact reference.
/// let metrics = problem.metrics(&x, &y, None)?;
/// assert!(metrics.contains_key("hypergrad_norm_sq"));
/// assert_eq!(problem.counts(), counts);
/// // A copy sharing the data, with its own counters (one per concurrent run).
/// assert_eq!(problem.fresh().counts(), Counts::default());
/// # Ok::<(), bilevel::Error>(())
/// ```
pub struct Problem {
    name: String,
    f_raw: Arc<dyn Objective>,
    g_raw: Arc<dyn Objective>,
    f: Counted,
    g: Counted,
    /// Rows drawn from minibatch samplers (added by the runner; see [`Counts::draws`]).
    sampled_rows: AtomicU64,
    reference: Option<Arc<dyn Reference>>,
    task_metrics: Option<Arc<dyn TaskMetrics>>,
    /// Whether [`metrics`](Self::metrics) reports the full-batch `outer_value`,
    /// `inner_grad_norm` and `linsys_residual`.
    full_batch_metrics: bool,
    unrolled: Option<UnrolledSpec>,
    x0: Vector,
    y0: Vector,
}

impl Problem {
    /// A problem from its outer objective `f` and inner objective `g`. Fails with
    /// [`Error::DimensionMismatch`] if they disagree on (dim x, dim y). The default start is
    /// x₀ = 0, y₀ = 0.
    pub fn new(
        name: impl Into<String>,
        f: impl Objective + 'static,
        g: impl Objective + 'static,
    ) -> Result<Self> {
        Self::from_arcs(name, Arc::new(f), Arc::new(g))
    }

    /// As [`new`](Self::new), from shared objectives.
    pub fn from_arcs(
        name: impl Into<String>,
        f: Arc<dyn Objective>,
        g: Arc<dyn Objective>,
    ) -> Result<Self> {
        let (fx, fy) = f.dims();
        let (gx, gy) = g.dims();
        if fx != gx {
            return Err(Error::DimensionMismatch {
                what: "dim x of f and g".into(),
                expected: gx,
                found: fx,
            });
        }
        if fy != gy {
            return Err(Error::DimensionMismatch {
                what: "dim y of f and g".into(),
                expected: gy,
                found: fy,
            });
        }
        if f.n_samples() == 0 || g.n_samples() == 0 {
            return Err(Error::config(
                "problem",
                "objectives must have at least one sample",
            ));
        }
        Ok(Self {
            name: name.into(),
            f: Counted::new(f.clone()),
            g: Counted::new(g.clone()),
            sampled_rows: AtomicU64::new(0),
            f_raw: f,
            g_raw: g,
            reference: None,
            task_metrics: None,
            full_batch_metrics: true,
            unrolled: None,
            x0: Vector::zeros(gx),
            y0: Vector::zeros(gy),
        })
    }

    /// Attaches exact ground truth.
    pub fn with_reference(mut self, reference: impl Reference + 'static) -> Self {
        self.reference = Some(Arc::new(reference));
        self
    }

    /// Attaches problem-specific metrics.
    pub fn with_task_metrics(mut self, metrics: impl TaskMetrics + 'static) -> Self {
        self.task_metrics = Some(Arc::new(metrics));
        self
    }

    /// Leaves out the full-batch metrics (`outer_value`, `inner_grad_norm`, `linsys_residual`):
    /// for problems whose full batch is costly to sweep at every evaluation (a few-shot
    /// problem's f on every task is a forward pass over tens of thousands of images) and whose
    /// task metrics say what matters.
    pub fn without_full_batch_metrics(mut self) -> Self {
        self.full_batch_metrics = false;
        self
    }

    /// Marks the problem as approximate (unrolled, MAML-type) bilevel.
    pub fn with_unrolled(mut self, spec: UnrolledSpec) -> Self {
        self.unrolled = Some(spec);
        self
    }

    /// Sets the default starting point. Fails on a dimension mismatch.
    pub fn with_start(mut self, x0: Vector, y0: Vector) -> Result<Self> {
        let (dx, dy) = self.dims();
        check_len("start x", dx, x0.nrows())?;
        check_len("start y", dy, y0.nrows())?;
        self.x0 = x0;
        self.y0 = y0;
        Ok(self)
    }

    /// The same problem with fresh (zero) counters, sharing data, reference and metrics.
    pub fn fresh(&self) -> Self {
        Self {
            name: self.name.clone(),
            f: Counted::new(self.f_raw.clone()),
            g: Counted::new(self.g_raw.clone()),
            sampled_rows: AtomicU64::new(0),
            f_raw: self.f_raw.clone(),
            g_raw: self.g_raw.clone(),
            reference: self.reference.clone(),
            task_metrics: self.task_metrics.clone(),
            full_batch_metrics: self.full_batch_metrics,
            unrolled: self.unrolled,
            x0: self.x0.clone(),
            y0: self.y0.clone(),
        }
    }

    /// The outer and inner objectives without counters (what a [`Reference`] such as
    /// [`NewtonReference`](crate::problems::common::NewtonReference) is built on: its solves
    /// must not count as the solver's oracle calls).
    pub fn uncounted_objectives(&self) -> (Arc<dyn Objective>, Arc<dyn Objective>) {
        (self.f_raw.clone(), self.g_raw.clone())
    }

    /// The problem's name (for traces and reports).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// (dim x, dim y).
    pub fn dims(&self) -> (usize, usize) {
        self.g.dims()
    }
    /// The outer objective f, counted.
    pub fn f(&self) -> &dyn Objective {
        &self.f
    }
    /// The inner objective g, counted.
    pub fn g(&self) -> &dyn Objective {
        &self.g
    }
    /// Exact ground truth, when the problem has one.
    pub fn reference(&self) -> Option<&dyn Reference> {
        self.reference.as_deref()
    }
    /// The defining inner loop of an approximate (unrolled) problem.
    pub fn unrolled(&self) -> Option<UnrolledSpec> {
        self.unrolled
    }
    /// The default starting point (x₀, y₀).
    pub fn start(&self) -> (Vector, Vector) {
        (self.x0.clone(), self.y0.clone())
    }
    /// Oracle counts so far.
    pub fn counts(&self) -> Counts {
        Counts {
            f: self.f.load(),
            g: self.g.load(),
            draws: self.sampled_rows.load(Relaxed)
                + self.f.full_rows.load(Relaxed)
                + self.g.full_rows.load(Relaxed),
        }
    }
    /// Overwrites the counters (used when resuming from a checkpoint).
    pub fn set_counts(&self, counts: &Counts) {
        self.f.store(&counts.f);
        self.g.store(&counts.g);
        self.sampled_rows.store(counts.draws, Relaxed);
    }
    /// Adds `rows` minibatch rows to [`Counts::draws`] (the runner reports the rows its solver
    /// drew from [`MinibatchSampler`](super::MinibatchSampler)s).
    pub fn add_drawn_rows(&self, rows: u64) {
        self.sampled_rows.fetch_add(rows, Relaxed);
    }

    /// Every metric name [`metrics`](Self::metrics) can report for this problem (for checking
    /// report settings before a run). Task metrics are named by one evaluation at the start.
    pub fn metric_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        if self.full_batch_metrics {
            names.extend(["outer_value", "inner_grad_norm", "linsys_residual"].map(String::from));
        }
        if let Some(reference) = &self.reference {
            names.extend(["value", "hypergrad_norm_sq", "inner_distance"].map(String::from));
            if reference.optimal_value().is_some() {
                names.push("suboptimality".into());
            }
        }
        if let Some(task) = &self.task_metrics {
            names.extend(
                task.evaluate(&self.x0, &self.y0)
                    .into_iter()
                    .map(|(n, _)| n),
            );
        }
        names.sort();
        names.dedup();
        names
    }

    /// Metrics at (x, y), from the *uncounted* objectives:
    /// - `outer_value` = f(x, y) on the full batch; `inner_grad_norm` = ‖∇ᵧg(x, y)‖ (unless
    ///   [`without_full_batch_metrics`](Self::without_full_batch_metrics));
    /// - with a reference: `value` = F(x), `hypergrad_norm_sq` = ‖∇F(x)‖²,
    ///   `inner_distance` = ‖y − y*(x)‖², and `suboptimality` = F(x) − F* when F* is known;
    /// - with an adjoint `v` (the solver's estimate of [∇²ᵧᵧg]⁻¹∇ᵧf):
    ///   `linsys_residual` = ‖∇²ᵧᵧg v − ∇ᵧf‖ / ‖∇ᵧf‖;
    /// - the problem's task metrics.
    pub fn metrics(&self, x: &Vector, y: &Vector, adjoint: Option<&Vector>) -> Result<Metrics> {
        let (dx, dy) = self.dims();
        check_len("metrics x", dx, x.nrows())?;
        check_len("metrics y", dy, y.nrows())?;
        let mut m = Metrics::new();
        if self.full_batch_metrics {
            m.insert("outer_value".into(), self.f_raw.value(x, y, Batch::Full));
            let mut gy = Vector::zeros(dy);
            self.g_raw.grad_y(x, y, Batch::Full, &mut gy);
            m.insert("inner_grad_norm".into(), gy.norm());
        }
        if let (Some(v), true) = (adjoint, self.full_batch_metrics) {
            check_len("adjoint v", dy, v.nrows())?;
            let mut b = Vector::zeros(dy);
            self.f_raw.grad_y(x, y, Batch::Full, &mut b);
            let mut av = Vector::zeros(dy);
            self.g_raw.hvp_yy(x, y, v, Batch::Full, &mut av);
            av.axpy(-1.0, &b);
            let denom = b.norm().max(f64::MIN_POSITIVE);
            m.insert("linsys_residual".into(), av.norm() / denom);
        }
        if let Some(reference) = &self.reference {
            let point = reference.evaluate(x)?;
            m.insert("value".into(), point.value);
            m.insert("hypergrad_norm_sq".into(), point.hypergradient.norm_sq());
            if let Some(y_star) = &point.y_star {
                let mut diff = y.clone();
                diff.axpy(-1.0, y_star);
                m.insert("inner_distance".into(), diff.norm_sq());
            }
            if let Some(f_star) = reference.optimal_value() {
                m.insert("suboptimality".into(), point.value - f_star);
            }
        }
        if let Some(task) = &self.task_metrics {
            for (name, value) in task.evaluate(x, y) {
                m.insert(name, value);
            }
        }
        Ok(m)
    }
}

fn check_len(what: &str, expected: usize, found: usize) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::DimensionMismatch {
            what: what.into(),
            expected,
            found,
        })
    }
}

impl std::fmt::Debug for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (dx, dy) = self.dims();
        f.debug_struct("Problem")
            .field("name", &self.name)
            .field("dim_x", &dx)
            .field("dim_y", &dy)
            .field("n_outer", &self.f.n_samples)
            .field("n_inner", &self.g.n_samples)
            .field("reference", &self.reference.is_some())
            .field("unrolled", &self.unrolled)
            .finish()
    }
}
