//! The oracle interface: [`Objective`] and the explicit minibatch handle [`Batch`].

use super::linalg::{Vector, VectorExt, fd};

/// Which samples an oracle call averages over.
///
/// Algorithms draw indices themselves (through a [`MinibatchSampler`](super::MinibatchSampler)),
/// so the *same* batch can be evaluated at two points, as the recursive-momentum (STORM) and
/// SARAH/SPIDER corrections of FSLA, MRBO and VRBO require.
#[derive(Clone, Copy, Debug)]
pub enum Batch<'a> {
    /// The whole objective h = (1/n) Σᵢ hᵢ (or a deterministic h).
    Full,
    /// The mean of hᵢ over these sample indices (repeats allowed, each counted).
    Indices(&'a [usize]),
}

impl Batch<'_> {
    /// How many samples this batch touches, for an objective with `n_samples` samples.
    pub fn len(&self, n_samples: usize) -> usize {
        match self {
            Batch::Full => n_samples,
            Batch::Indices(idx) => idx.len(),
        }
    }
    /// True for an explicit empty index list.
    pub fn is_empty(&self) -> bool {
        matches!(self, Batch::Indices(idx) if idx.is_empty())
    }
    /// The sample indices this batch averages over, for an objective with `n_samples` samples:
    /// `0..n_samples` for [`Batch::Full`], the indices (repeats included) otherwise.
    ///
    /// ```
    /// use bilevel::core::Batch;
    /// let mean = |values: &[f64], batch: Batch<'_>| {
    ///     let rows = batch.samples(values.len());
    ///     let count = rows.len() as f64;
    ///     rows.map(|i| values[i]).sum::<f64>() / count
    /// };
    /// assert_eq!(mean(&[1.0, 2.0, 6.0], Batch::Full), 3.0);
    /// assert_eq!(mean(&[1.0, 2.0, 6.0], Batch::Indices(&[2, 2, 0])), 13.0 / 3.0);
    /// ```
    pub fn samples(&self, n_samples: usize) -> BatchSamples<'_> {
        match self {
            Batch::Full => BatchSamples::Full(0..n_samples),
            Batch::Indices(idx) => BatchSamples::Indices(idx.iter()),
        }
    }
}

/// The iterator of [`Batch::samples`].
#[derive(Clone, Debug)]
pub enum BatchSamples<'a> {
    /// Every sample, in order.
    Full(std::ops::Range<usize>),
    /// The listed samples.
    Indices(std::slice::Iter<'a, usize>),
}

impl Iterator for BatchSamples<'_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        match self {
            BatchSamples::Full(range) => range.next(),
            BatchSamples::Indices(iter) => iter.next().copied(),
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            BatchSamples::Full(range) => range.size_hint(),
            BatchSamples::Indices(iter) => iter.size_hint(),
        }
    }
}

impl ExactSizeIterator for BatchSamples<'_> {}

/// v ↦ ∇²ᵧᵧh(x, y) · v at a point fixed by [`Objective::hessian_yy_at`], written into its second
/// argument (overwritten).
pub type HessianOperator<'a> = Box<dyn Fn(&Vector, &mut Vector) + 'a>;

/// Output buffers of a fused oracle call ([`Objective::fused`]): every buffer given receives its
/// oracle (overwritten) at the one point and batch of the call.
#[derive(Debug, Default)]
pub struct Fused<'a> {
    /// h(x, y) on the batch.
    pub value: Option<&'a mut f64>,
    /// ∇ₓh (length dim x).
    pub grad_x: Option<&'a mut Vector>,
    /// ∇ᵧh (length dim y).
    pub grad_y: Option<&'a mut Vector>,
    /// ∇²ᵧᵧh · v (length dim y).
    pub hvp_yy: Option<&'a mut Vector>,
    /// ∇²ₓᵧh · v (length dim x).
    pub cross_xy: Option<&'a mut Vector>,
}

impl Fused<'_> {
    /// True when a product along v is requested.
    pub fn needs_direction(&self) -> bool {
        self.hvp_yy.is_some() || self.cross_xy.is_some()
    }
}

/// A smooth function h(x, y) seen through oracles. The outer objective f and the inner objective
/// g of a bilevel [`Problem`](super::Problem) are both `Objective`s.
///
/// Outputs are written into caller-owned buffers (`out` is overwritten, never accumulated), so
/// that a solver's steady-state iteration allocates nothing. Each output must already have the
/// right length; implementations may `assert!` it.
///
/// Required: [`dims`](Self::dims), [`value`](Self::value), [`grad_x`](Self::grad_x),
/// [`grad_y`](Self::grad_y). [`fused`](Self::fused) (several oracles at one point and batch) and
/// [`grad_xy`](Self::grad_xy) default to the component calls; data-backed objectives override
/// them to read each sample once. The second-order products default to central differences of the
/// gradients (two gradient calls each, O(ε^{2/3}) relative error; a [`Problem`](super::Problem)
/// counts such a product as the two gradient calls, and in
/// [`OracleCounts::fd_products`](super::OracleCounts::fd_products)); override them when an exact
/// product is cheap. [`testing::check_objective`](crate::testing::check_objective) compares them
/// against finite differences.
///
/// The interface is deliberately plain (`&Vector` in, `&mut Vector` out, an explicit batch) so
/// that an objective written in Python (callbacks on numpy arrays) or a hand-written neural
/// network (forward, backward and R-op) can implement it without changes.
///
/// # Example: per-feature ridge penalties tuned on validation data
/// The inner problem fits y on training rows (aᵢ, bᵢ) with a penalty e^{xⱼ} on each weight; the
/// outer problem is the validation error of that fit:
///
/// g(x, y) = (1/n) Σᵢ ½(aᵢᵀy − bᵢ)² + ½ Σⱼ e^{xⱼ} yⱼ²,  f(x, y) = (1/m) Σᵢ ½(cᵢᵀy − dᵢ)².
///
/// ```
/// use bilevel::prelude::*;
/// use bilevel::problems::common::ReferenceConfig;
///
/// /// Rows and targets of a least-squares term.
/// struct Rows {
///     a: Vec<Vec<f64>>,
///     b: Vec<f64>,
/// }
///
/// impl Rows {
///     /// Deterministic made-up data: `n` rows of `d` features.
///     fn new(n: usize, d: usize, phase: f64) -> Self {
///         let a: Vec<Vec<f64>> = (0..n)
///             .map(|i| (0..d).map(|j| ((i * d + j) as f64 + phase).sin()).collect())
///             .collect();
///         let b = a.iter().map(|row| row[0] - 0.5 * row[1] + 0.1 * (row[2] * 7.0).cos()).collect();
///         Rows { a, b }
///     }
///     /// ½ mean of squared residuals on `batch`, and its gradient in y added to `grad`.
///     fn loss(&self, y: &Vector, batch: Batch<'_>, grad: Option<&mut Vector>) -> f64 {
///         let rows = batch.samples(self.b.len());
///         let scale = 1.0 / rows.len() as f64;
///         let mut loss = 0.0;
///         let mut grad = grad;
///         for i in rows {
///             let residual: f64 =
///                 self.a[i].iter().zip(y.as_slice()).map(|(a, y)| a * y).sum::<f64>() - self.b[i];
///             loss += 0.5 * residual * residual * scale;
///             if let Some(g) = grad.as_deref_mut() {
///                 for (gj, aj) in g.as_mut_slice().iter_mut().zip(&self.a[i]) {
///                     *gj += scale * residual * aj;
///                 }
///             }
///         }
///         loss
///     }
/// }
///
/// /// g: training loss plus the per-feature penalty.
/// struct Train(Rows);
/// /// f: validation loss (x enters only through y*(x)).
/// struct Validation(Rows);
///
/// impl Objective for Train {
///     fn dims(&self) -> (usize, usize) {
///         (self.0.a[0].len(), self.0.a[0].len())
///     }
///     fn n_samples(&self) -> usize {
///         self.0.b.len()
///     }
///     fn value(&self, x: &Vector, y: &Vector, batch: Batch<'_>) -> f64 {
///         let penalty: f64 =
///             x.as_slice().iter().zip(y.as_slice()).map(|(x, y)| 0.5 * x.exp() * y * y).sum();
///         self.0.loss(y, batch, None) + penalty
///     }
///     fn grad_x(&self, x: &Vector, y: &Vector, _batch: Batch<'_>, out: &mut Vector) {
///         for (j, o) in out.as_mut_slice().iter_mut().enumerate() {
///             *o = 0.5 * x[j].exp() * y[j] * y[j];
///         }
///     }
///     fn grad_y(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
///         for (j, o) in out.as_mut_slice().iter_mut().enumerate() {
///             *o = x[j].exp() * y[j];
///         }
///         self.0.loss(y, batch, Some(out));
///     }
///     // The second-order products (hvp_yy, cross_xy, cross_yx) are left to the
///     // finite-difference defaults: two gradient calls each, counted as such.
/// }
///
/// impl Objective for Validation {
///     fn dims(&self) -> (usize, usize) {
///         (self.0.a[0].len(), self.0.a[0].len())
///     }
///     fn n_samples(&self) -> usize {
///         self.0.b.len()
///     }
///     fn value(&self, _x: &Vector, y: &Vector, batch: Batch<'_>) -> f64 {
///         self.0.loss(y, batch, None)
///     }
///     fn grad_x(&self, _x: &Vector, _y: &Vector, _batch: Batch<'_>, out: &mut Vector) {
///         out.set_zero();
///     }
///     fn grad_y(&self, _x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
///         out.set_zero();
///         self.0.loss(y, batch, Some(out));
///     }
/// }
///
/// let (train, validation) = (Train(Rows::new(200, 5, 0.0)), Validation(Rows::new(80, 5, 0.5)));
///
/// // 1. Check every oracle against finite differences, on a minibatch.
/// let (x, y) = (bilevel::core::linalg::constant(5, 0.3), bilevel::core::linalg::constant(5, -0.2));
/// let report = bilevel::testing::check_objective(&train, &x, &y, Batch::Indices(&[3, 7, 7]), 0);
/// assert!(report.worst() < 1e-5, "{report:?}");
///
/// // 2. The problem, with the generic exact reference (Newton on g, then the adjoint system),
/// //    which gives the metrics `value` (F(x)) and `hypergrad_norm_sq` (‖∇F(x)‖²).
/// let problem = Problem::new("ridge-penalties", validation, train)?
///     .with_newton_reference(ReferenceConfig::default());
///
/// // 3. Tune x by AID-CG (full batches) until ‖∇F‖² ≤ 1e-9, or for 300 iterations.
/// let config = SolverConfig::AidCg(AidCgConfig {
///     inner_lr: 0.2,
///     outer_lr: Schedule::constant(1.0),
///     ..Default::default()
/// });
/// let options = RunOptions {
///     max_iters: Some(300),
///     tol: Some(1e-9),
///     eval_every: 50,
///     ..Default::default()
/// };
/// let solution = bilevel::solve(&problem, &config, options)?;
/// let start = problem.metrics(&problem.start().0, &problem.start().1, None)?["value"];
/// assert_eq!(solution.summary.status, RunStatus::Done);
/// assert!(solution.summary.final_metrics["value"] < start);
/// // Each finite-difference product was counted as the two gradient calls it made.
/// assert!(solution.summary.counts.g.fd_products > 0);
/// assert_eq!(solution.summary.counts.g.hvp_yy, 0);
/// println!("penalties e^x = {:?}", solution.x.as_slice().iter().map(|x| x.exp()).collect::<Vec<_>>());
/// # Ok::<(), bilevel::Error>(())
/// ```
pub trait Objective: Send + Sync {
    /// (dim x, dim y).
    fn dims(&self) -> (usize, usize);
    /// n in h = (1/n) Σᵢ hᵢ; 1 for a deterministic function.
    fn n_samples(&self) -> usize {
        1
    }
    /// h(x, y) on `batch`.
    fn value(&self, x: &Vector, y: &Vector, batch: Batch<'_>) -> f64;
    /// ∇ₓh(x, y) on `batch` into `out` (length dim x).
    fn grad_x(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector);
    /// ∇ᵧh(x, y) on `batch` into `out` (length dim y).
    fn grad_y(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector);
    /// Both gradients at one point. Data-backed objectives override this to share one pass over
    /// the batch (margins computed once).
    fn grad_xy(
        &self,
        x: &Vector,
        y: &Vector,
        batch: Batch<'_>,
        out_x: &mut Vector,
        out_y: &mut Vector,
    ) {
        self.grad_x(x, y, batch, out_x);
        self.grad_y(x, y, batch, out_y);
    }
    /// Any subset of {h, ∇ₓh, ∇ᵧh, ∇²ᵧᵧh·v, ∇²ₓᵧh·v} at one point (x, y) on one batch, the products
    /// along `v` (required when a product is requested). The result equals the component calls
    /// to rounding; a [`Problem`](super::Problem) counts it as those calls. The default makes
    /// the component calls (∇ₓh and ∇ᵧh together through [`grad_xy`](Self::grad_xy)).
    fn fused(&self, x: &Vector, y: &Vector, v: Option<&Vector>, batch: Batch<'_>, out: Fused<'_>) {
        fused_by_components(self, x, y, v, batch, out);
    }
    /// h(x, y) on `batch`, ∇ᵧh into `grad` and the dense Hessian ∇²ᵧᵧh (row-major,
    /// dim y × dim y) into `hess`, for exact evaluations of small inner problems. `None` (the
    /// default) when the objective has no dense Hessian: callers then use Hessian-vector
    /// products. A [`Problem`](super::Problem) counts it as `value` + `grad_y` + dim y
    /// `hvp_yy`.
    fn value_grad_hess_yy(
        &self,
        _x: &Vector,
        _y: &Vector,
        _batch: Batch<'_>,
        _grad: &mut Vector,
        _hess: &mut [f64],
    ) -> Option<f64> {
        None
    }
    /// The diagonal of ∇²ᵧᵧh on `batch` into `out` (length dim y), for preconditioning the
    /// conjugate-gradient solves of an exact reference (Jacobi). `false` (the default) when the
    /// objective does not provide it (`out` is then left unspecified). A
    /// [`Problem`](super::Problem) counts it as one `hvp_yy`: one pass over the batch.
    fn hess_yy_diag(&self, _x: &Vector, _y: &Vector, _batch: Batch<'_>, _out: &mut Vector) -> bool {
        false
    }
    /// ∇²ᵧᵧh(x, y) on the full batch as an operator, for many products at one point (the
    /// conjugate-gradient solves of an exact reference): the objective may hold what depends on
    /// (x, y) alone, so that each product costs less than [`hvp_yy`](Self::hvp_yy) (the
    /// logistic losses hold each sample's class probabilities: a product then skips W x and its
    /// softmax). A product equals `hvp_yy` on the full batch up to rounding. `None` (the
    /// default): nothing to hold; use `hvp_yy`. A [`Problem`](super::Problem) counts the
    /// preparation as one `hvp_yy` (one pass) and each product as one.
    fn hessian_yy_at<'a>(&'a self, _x: &'a Vector, _y: &'a Vector) -> Option<HessianOperator<'a>> {
        None
    }
    /// ∇²ᵧᵧh · v (y-space → y-space) into `out`.
    fn hvp_yy(&self, x: &Vector, y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        let calls = fd::central(v, y.max_abs(), out, |e, buf| {
            self.grad_y(x, &(y + e), batch, buf)
        });
        fd::note_gradients_spent(0, calls);
    }
    /// ∇²ₓᵧh · v (y-space → x-space), the mixed "cross" product, into `out`.
    fn cross_xy(&self, x: &Vector, y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        let calls = fd::central(v, y.max_abs(), out, |e, buf| {
            self.grad_x(x, &(y + e), batch, buf)
        });
        fd::note_gradients_spent(calls, 0);
    }
    /// ∇²ᵧₓh · u (x-space → y-space), the transpose product, into `out`.
    fn cross_yx(&self, x: &Vector, y: &Vector, u: &Vector, batch: Batch<'_>, out: &mut Vector) {
        let calls = fd::central(u, x.max_abs(), out, |e, buf| {
            self.grad_y(&(x + e), y, batch, buf)
        });
        fd::note_gradients_spent(0, calls);
    }
}

/// [`Objective::fused`] made of the component calls (∇ₓh and ∇ᵧh together through
/// [`Objective::grad_xy`]): the trait's default, and the fallback of an objective that overrides
/// `fused` only for some of its instances.
pub fn fused_by_components<O: Objective + ?Sized>(
    objective: &O,
    x: &Vector,
    y: &Vector,
    v: Option<&Vector>,
    batch: Batch<'_>,
    out: Fused<'_>,
) {
    let v = || v.expect("Objective::fused: a product along v needs `v`");
    if let Some(value) = out.value {
        *value = objective.value(x, y, batch);
    }
    match (out.grad_x, out.grad_y) {
        (Some(gx), Some(gy)) => objective.grad_xy(x, y, batch, gx, gy),
        (Some(gx), None) => objective.grad_x(x, y, batch, gx),
        (None, Some(gy)) => objective.grad_y(x, y, batch, gy),
        (None, None) => {}
    }
    if let Some(out) = out.hvp_yy {
        objective.hvp_yy(x, y, v(), batch, out);
    }
    if let Some(out) = out.cross_xy {
        objective.cross_xy(x, y, v(), batch, out);
    }
}
