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
}

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
/// gradients (two gradient calls each, O(ε^{2/3}) relative error); override them when an exact
/// product is cheap. [`testing::check_objective`](crate::testing::check_objective) compares them
/// against finite differences.
///
/// The interface is deliberately plain (`&Vector` in, `&mut Vector` out, an explicit batch) so
/// that an objective written in Python (callbacks on numpy arrays) or a hand-written neural
/// network (forward, backward and R-op) can implement it without changes.
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
        let v = || v.expect("Objective::fused: a product along v needs `v`");
        if let Some(value) = out.value {
            *value = self.value(x, y, batch);
        }
        match (out.grad_x, out.grad_y) {
            (Some(gx), Some(gy)) => self.grad_xy(x, y, batch, gx, gy),
            (Some(gx), None) => self.grad_x(x, y, batch, gx),
            (None, Some(gy)) => self.grad_y(x, y, batch, gy),
            (None, None) => {}
        }
        if let Some(out) = out.hvp_yy {
            self.hvp_yy(x, y, v(), batch, out);
        }
        if let Some(out) = out.cross_xy {
            self.cross_xy(x, y, v(), batch, out);
        }
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
    /// ∇²ᵧᵧh · v (y-space → y-space) into `out`.
    fn hvp_yy(&self, x: &Vector, y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        fd::central(v, y.max_abs(), out, |e, buf| {
            self.grad_y(x, &(y + e), batch, buf)
        });
    }
    /// ∇²ₓᵧh · v (y-space → x-space), the mixed "cross" product, into `out`.
    fn cross_xy(&self, x: &Vector, y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        fd::central(v, y.max_abs(), out, |e, buf| {
            self.grad_x(x, &(y + e), batch, buf)
        });
    }
    /// ∇²ᵧₓh · u (x-space → y-space), the transpose product, into `out`.
    fn cross_yx(&self, x: &Vector, y: &Vector, u: &Vector, batch: Batch<'_>, out: &mut Vector) {
        fd::central(u, x.max_abs(), out, |e, buf| {
            self.grad_y(&(x + e), y, batch, buf)
        });
    }
}
