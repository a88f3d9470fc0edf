//! [`Problem`]: the outer and inner objectives behind oracle counters, plus optional ground truth.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::linalg::{Vector, VectorExt};
use super::objective::{Batch, Fused, Objective};

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
    }
}

/// An objective behind relaxed atomic counters. Algorithms only ever see this wrapper, so no
/// oracle call escapes the count.
struct Counted {
    inner: Arc<dyn Objective>,
    counts: AtomicCounts,
    n_samples: usize,
}

impl Counted {
    fn new(inner: Arc<dyn Objective>) -> Self {
        let n_samples = inner.n_samples();
        Self {
            inner,
            counts: AtomicCounts::default(),
            n_samples,
        }
    }
    #[inline]
    fn touch(&self, counter: &AtomicU64, batch: Batch<'_>) {
        counter.fetch_add(1, Relaxed);
        self.counts
            .samples
            .fetch_add(batch.len(self.n_samples) as u64, Relaxed);
    }
}

impl Objective for Counted {
    fn dims(&self) -> (usize, usize) {
        self.inner.dims()
    }
    fn n_samples(&self) -> usize {
        self.n_samples
    }
    fn value(&self, x: &Vector, y: &Vector, batch: Batch<'_>) -> f64 {
        self.touch(&self.counts.value, batch);
        self.inner.value(x, y, batch)
    }
    fn grad_x(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        self.touch(&self.counts.grad_x, batch);
        self.inner.grad_x(x, y, batch, out)
    }
    fn grad_y(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
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
        self.touch(&self.counts.grad_x, batch);
        self.touch(&self.counts.grad_y, batch);
        self.inner.grad_xy(x, y, batch, out_x, out_y)
    }
    fn fused(&self, x: &Vector, y: &Vector, v: Option<&Vector>, batch: Batch<'_>, out: Fused<'_>) {
        // Counted as the component calls it replaces.
        let c = &self.counts;
        for (given, counter) in [
            (out.value.is_some(), &c.value),
            (out.grad_x.is_some(), &c.grad_x),
            (out.grad_y.is_some(), &c.grad_y),
            (out.hvp_yy.is_some(), &c.hvp_yy),
            (out.cross_xy.is_some(), &c.cross_xy),
        ] {
            if given {
                self.touch(counter, batch);
            }
        }
        self.inner.fused(x, y, v, batch, out)
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
        self.touch(&self.counts.value, batch);
        self.touch(&self.counts.grad_y, batch);
        for _ in 0..y.nrows() {
            self.touch(&self.counts.hvp_yy, batch);
        }
        Some(value)
    }
    fn hvp_yy(&self, x: &Vector, y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        self.touch(&self.counts.hvp_yy, batch);
        self.inner.hvp_yy(x, y, v, batch, out)
    }
    fn cross_xy(&self, x: &Vector, y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        self.touch(&self.counts.cross_xy, batch);
        self.inner.cross_xy(x, y, v, batch, out)
    }
    fn cross_yx(&self, x: &Vector, y: &Vector, u: &Vector, batch: Batch<'_>, out: &mut Vector) {
        self.touch(&self.counts.cross_yx, batch);
        self.inner.cross_yx(x, y, u, batch, out)
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
/// counts.
pub struct Problem {
    name: String,
    f_raw: Arc<dyn Objective>,
    g_raw: Arc<dyn Objective>,
    f: Counted,
    g: Counted,
    reference: Option<Arc<dyn Reference>>,
    task_metrics: Option<Arc<dyn TaskMetrics>>,
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
            f_raw: f,
            g_raw: g,
            reference: None,
            task_metrics: None,
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
            f_raw: self.f_raw.clone(),
            g_raw: self.g_raw.clone(),
            reference: self.reference.clone(),
            task_metrics: self.task_metrics.clone(),
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
            f: self.f.counts.load(),
            g: self.g.counts.load(),
        }
    }
    /// Overwrites the counters (used when resuming from a checkpoint).
    pub fn set_counts(&self, counts: &Counts) {
        self.f.counts.store(&counts.f);
        self.g.counts.store(&counts.g);
    }

    /// Every metric name [`metrics`](Self::metrics) can report for this problem (for checking
    /// report settings before a run). Task metrics are named by one evaluation at the start.
    pub fn metric_names(&self) -> Vec<String> {
        let mut names: Vec<String> = ["outer_value", "inner_grad_norm", "linsys_residual"]
            .map(String::from)
            .to_vec();
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
    /// - `outer_value` = f(x, y) on the full batch; `inner_grad_norm` = ‖∇ᵧg(x, y)‖;
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
        m.insert("outer_value".into(), self.f_raw.value(x, y, Batch::Full));
        let mut gy = Vector::zeros(dy);
        self.g_raw.grad_y(x, y, Batch::Full, &mut gy);
        m.insert("inner_grad_norm".into(), gy.norm());
        if let Some(v) = adjoint {
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
