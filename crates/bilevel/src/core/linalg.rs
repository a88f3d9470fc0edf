//! The one vector type, the RNG, slice kernels, finite differences and the serde shims.
//!
//! Every algorithm works on [`Vector`] (`faer::Col<f64>`). Hot loops use the in-place helpers of
//! [`VectorExt`] (`axpy`, `assign`, `dot`, …), which never allocate; faer's operators
//! (`&a + &b`) are fine outside hot loops.

use faer::{Col, Mat};
use rand::SeedableRng;

/// The one dense vector type.
pub type Vector = Col<f64>;
/// The one dense matrix type (used by references and small dense subproblems).
pub type Matrix = Mat<f64>;
/// Seedable, serde-serializable, value-stable RNG; lives inside every solver `State`.
pub type Rng = rand_chacha::ChaCha8Rng;

/// A fresh RNG for `seed` on stream `stream` (independent streams for one seed).
pub fn rng_from_seed(seed: u64, stream: u64) -> Rng {
    let mut rng = Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// A zero vector of length `n`.
pub fn zeros(n: usize) -> Vector {
    Vector::zeros(n)
}

/// A vector holding a copy of `values`.
pub fn from_slice(values: &[f64]) -> Vector {
    Vector::from_fn(values.len(), |i| values[i])
}

/// A vector with every entry equal to `value`.
pub fn constant(n: usize, value: f64) -> Vector {
    Vector::from_fn(n, |_| value)
}

/// Allocation-free kernels on [`Vector`]. Every method asserts equal lengths.
pub trait VectorExt {
    /// The entries as a slice.
    fn as_slice(&self) -> &[f64];
    /// The entries as a mutable slice.
    fn as_mut_slice(&mut self) -> &mut [f64];
    /// ⟨self, other⟩.
    fn dot(&self, other: &Vector) -> f64;
    /// ‖self‖².
    fn norm_sq(&self) -> f64;
    /// ‖self‖.
    fn norm(&self) -> f64 {
        self.norm_sq().sqrt()
    }
    /// self ← self + alpha · x.
    fn axpy(&mut self, alpha: f64, x: &Vector);
    /// self ← alpha · self + x.
    fn scale_add(&mut self, alpha: f64, x: &Vector);
    /// self ← x (lengths must agree).
    fn assign(&mut self, x: &Vector);
    /// self ← alpha · self.
    fn scale(&mut self, alpha: f64);
    /// self ← 0.
    fn set_zero(&mut self);
    /// True when every entry is finite.
    fn all_finite(&self) -> bool;
    /// max |entry| (0 for an empty vector; NaN if an entry is NaN).
    fn max_abs(&self) -> f64;
}

impl VectorExt for Vector {
    #[inline]
    fn as_slice(&self) -> &[f64] {
        self.try_as_col_major()
            .expect("invariant: an owned Col is contiguous")
            .as_slice()
    }
    #[inline]
    fn as_mut_slice(&mut self) -> &mut [f64] {
        self.try_as_col_major_mut()
            .expect("invariant: an owned Col is contiguous")
            .as_slice_mut()
    }
    #[inline]
    #[track_caller]
    fn dot(&self, other: &Vector) -> f64 {
        dot(self.as_slice(), other.as_slice())
    }
    #[inline]
    fn norm_sq(&self) -> f64 {
        let s = self.as_slice();
        dot(s, s)
    }
    #[inline]
    #[track_caller]
    fn axpy(&mut self, alpha: f64, x: &Vector) {
        axpy(alpha, x.as_slice(), self.as_mut_slice());
    }
    #[inline]
    #[track_caller]
    fn scale_add(&mut self, alpha: f64, x: &Vector) {
        let (out, x) = (self.as_mut_slice(), x.as_slice());
        assert_eq!(out.len(), x.len(), "scale_add: length mismatch");
        for (o, &xi) in out.iter_mut().zip(x) {
            *o = alpha * *o + xi;
        }
    }
    #[inline]
    #[track_caller]
    fn assign(&mut self, x: &Vector) {
        let (out, x) = (self.as_mut_slice(), x.as_slice());
        assert_eq!(out.len(), x.len(), "assign: length mismatch");
        out.copy_from_slice(x);
    }
    #[inline]
    fn scale(&mut self, alpha: f64) {
        for o in self.as_mut_slice() {
            *o *= alpha;
        }
    }
    #[inline]
    fn set_zero(&mut self) {
        self.as_mut_slice().fill(0.0);
    }
    fn all_finite(&self) -> bool {
        self.as_slice().iter().all(|v| v.is_finite())
    }
    fn max_abs(&self) -> f64 {
        // Eight independent lanes with a sticky NaN (a select, not a branch): it vectorises,
        // where one running fold did not (28 µs per call at the hyper-cleaning shape's 28k
        // entries, 7 % of a run's time in the runner's divergence check).
        #[inline(always)]
        fn step(m: f64, v: f64) -> f64 {
            let a = v.abs();
            if a > m || a.is_nan() { a } else { m }
        }
        let s = self.as_slice();
        let (chunks, tail) = s.as_chunks::<8>();
        let mut lanes = [0.0_f64; 8];
        for c in chunks {
            for (m, &v) in lanes.iter_mut().zip(c) {
                *m = step(*m, v);
            }
        }
        for &v in tail {
            lanes[0] = step(lanes[0], v);
        }
        lanes.iter().fold(0.0_f64, |m, &l| {
            if m.is_nan() || l.is_nan() {
                f64::NAN
            } else {
                m.max(l)
            }
        })
    }
}

/// ⟨a, b⟩ over slices, four independent accumulators (vectorises well).
#[inline]
#[track_caller]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "dot: length mismatch");
    let mut acc = [0.0_f64; 4];
    let chunks_a = a.chunks_exact(4);
    let chunks_b = b.chunks_exact(4);
    let (rem_a, rem_b) = (chunks_a.remainder(), chunks_b.remainder());
    for (ca, cb) in chunks_a.zip(chunks_b) {
        for k in 0..4 {
            acc[k] += ca[k] * cb[k];
        }
    }
    let mut tail = 0.0;
    for (x, y) in rem_a.iter().zip(rem_b) {
        tail += x * y;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// out ← out + alpha · x over slices.
#[inline]
#[track_caller]
pub fn axpy(alpha: f64, x: &[f64], out: &mut [f64]) {
    assert_eq!(out.len(), x.len(), "axpy: length mismatch");
    for (o, &xi) in out.iter_mut().zip(x) {
        *o += alpha * xi;
    }
}

/// out ← A x for a row-major `rows × cols` matrix `a` (hand-written: no allocation).
#[track_caller]
pub fn gemv(a: &[f64], rows: usize, cols: usize, x: &[f64], out: &mut [f64]) {
    assert_eq!(a.len(), rows * cols, "gemv: matrix size");
    assert_eq!(x.len(), cols, "gemv: x length");
    assert_eq!(out.len(), rows, "gemv: out length");
    for (i, o) in out.iter_mut().enumerate() {
        *o = dot(&a[i * cols..(i + 1) * cols], x);
    }
}

/// out ← Aᵀ x for a row-major `rows × cols` matrix `a` (no allocation).
#[track_caller]
pub fn gemv_t(a: &[f64], rows: usize, cols: usize, x: &[f64], out: &mut [f64]) {
    assert_eq!(a.len(), rows * cols, "gemv_t: matrix size");
    assert_eq!(x.len(), rows, "gemv_t: x length");
    assert_eq!(out.len(), cols, "gemv_t: out length");
    out.fill(0.0);
    for (i, &xi) in x.iter().enumerate() {
        if xi != 0.0 {
            axpy(xi, &a[i * cols..(i + 1) * cols], out);
        }
    }
}

/// A row-major copy of a faer matrix.
pub fn to_row_major(m: &Matrix) -> Vec<f64> {
    let mut out = Vec::with_capacity(m.nrows() * m.ncols());
    for i in 0..m.nrows() {
        for j in 0..m.ncols() {
            out.push(m[(i, j)]);
        }
    }
    out
}

/// Reusable scratch vectors for a solver step, not serialized (`#[serde(skip)]`): after a
/// resume they are re-created on the first step, and cost nothing afterwards.
///
/// ```
/// # use bilevel::core::linalg::Scratch;
/// let mut scratch = Scratch::default();
/// let [a, b] = scratch.vectors([3, 5]);
/// assert_eq!((a.nrows(), b.nrows()), (3, 5));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Scratch {
    bufs: Vec<Vector>,
}

impl Scratch {
    /// `N` vectors of the given lengths (zeroed when first created; otherwise holding whatever
    /// the previous step left).
    pub fn vectors<const N: usize>(&mut self, lens: [usize; N]) -> &mut [Vector; N] {
        let fits =
            self.bufs.len() == N && self.bufs.iter().zip(&lens).all(|(b, &n)| b.nrows() == n);
        if !fits {
            self.bufs = lens.iter().map(|&n| Vector::zeros(n)).collect();
        }
        (&mut self.bufs[..])
            .try_into()
            .expect("invariant: the buffer count equals N")
    }

    /// The `i`-th vector of the last [`vectors`](Self::vectors) call.
    pub fn get(&self, i: usize) -> Option<&Vector> {
        self.bufs.get(i)
    }
}

/// Central finite differences, the fallback for second-order products.
pub mod fd {
    use std::cell::Cell;

    use super::{Vector, VectorExt};

    thread_local! {
        /// Gradient evaluations (∇ₓ, ∇ᵧ) made by the finite-difference defaults of
        /// [`Objective`](crate::core::Objective) on this thread.
        static SPENT: Cell<GradientsSpent> = const { Cell::new(GradientsSpent { x: 0, y: 0 }) };
    }

    /// Gradient evaluations made by the finite-difference products of
    /// [`Objective`](crate::core::Objective)'s defaults on the current thread, so far. A
    /// [`Problem`](crate::core::Problem) reads it around each product call to count a product
    /// that fell back to finite differences as the two gradient calls it made.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct GradientsSpent {
        /// ∇ₓ evaluations.
        pub x: u64,
        /// ∇ᵧ evaluations.
        pub y: u64,
    }

    impl GradientsSpent {
        /// (∇ₓ, ∇ᵧ) evaluations since `earlier`.
        pub fn since(self, earlier: GradientsSpent) -> (u64, u64) {
            (self.x - earlier.x, self.y - earlier.y)
        }
    }

    /// The gradient evaluations of the finite-difference defaults on this thread so far.
    pub fn gradients_spent() -> GradientsSpent {
        SPENT.with(Cell::get)
    }

    /// Records `x` ∇ₓ and `y` ∇ᵧ evaluations made for a finite-difference product.
    pub fn note_gradients_spent(x: u64, y: u64) {
        SPENT.with(|s| {
            let now = s.get();
            s.set(GradientsSpent {
                x: now.x + x,
                y: now.y + y,
            });
        });
    }

    /// Writes `(G(h·dir) − G(−h·dir)) / 2h` into `out`, with `h = ε^{1/3} / ‖dir‖` scaled by
    /// `1 + scale` (the size of the point), so the truncation and rounding errors balance.
    /// Writes zero when `dir = 0`. `grad_at(e, buf)` must write the gradient at the point
    /// shifted by `e` into `buf`. Returns how many times it called `grad_at` (2, or 0 when
    /// `dir = 0`).
    pub fn central(
        dir: &Vector,
        point_scale: f64,
        out: &mut Vector,
        mut grad_at: impl FnMut(&Vector, &mut Vector),
    ) -> u64 {
        let norm = dir.norm();
        if norm == 0.0 || !norm.is_finite() {
            out.set_zero();
            return 0;
        }
        let h = f64::EPSILON.cbrt() * (1.0 + point_scale) / norm;
        let mut shift = dir.clone();
        shift.scale(h);
        let mut plus = Vector::zeros(out.nrows());
        grad_at(&shift, &mut plus);
        shift.scale(-1.0);
        grad_at(&shift, out);
        // out ← (plus − minus) / 2h
        out.scale_add(-1.0, &plus);
        out.scale(1.0 / (2.0 * h));
        2
    }
}

/// Serde shim: a [`Vector`] as a sequence of `f64` (`#[serde(with = "serde_vector")]`).
/// `serde_json` with `float_roundtrip` reads every `f64` back bit-exactly.
pub mod serde_vector {
    use super::Vector;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Serialize as a sequence of `f64`.
    pub fn serialize<S: Serializer>(v: &Vector, s: S) -> Result<S::Ok, S::Error> {
        use super::VectorExt;
        v.as_slice().serialize(s)
    }
    /// Deserialize from a sequence of `f64`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vector, D::Error> {
        let values = Vec::<f64>::deserialize(d)?;
        Ok(super::from_slice(&values))
    }
}

/// Serde shim for `Vec<Vector>`.
pub mod serde_vectors {
    use super::{Vector, VectorExt};
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialize as a sequence of sequences of `f64`.
    pub fn serialize<S: Serializer>(vs: &[Vector], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(vs.len()))?;
        for v in vs {
            seq.serialize_element(v.as_slice())?;
        }
        seq.end()
    }
    /// Deserialize from a sequence of sequences of `f64`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vector>, D::Error> {
        let values = Vec::<Vec<f64>>::deserialize(d)?;
        Ok(values.iter().map(|v| super::from_slice(v)).collect())
    }
}

/// Serde shim for `Option<Vector>`.
pub mod serde_opt_vector {
    use super::{Vector, VectorExt};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Serialize as `null` or a sequence of `f64`.
    pub fn serialize<S: Serializer>(v: &Option<Vector>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref().map(|v| v.as_slice()).serialize(s)
    }
    /// Deserialize from `null` or a sequence of `f64`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vector>, D::Error> {
        let values = Option::<Vec<f64>>::deserialize(d)?;
        Ok(values.map(|v| super::from_slice(&v)))
    }
}

/// A uniform integer in `0..n` from 64 random bits (Lemire's multiply-shift with rejection).
/// Written here, not taken from `rand`, so that sample streams are value-stable across `rand`
/// versions.
pub fn uniform_below(rng: &mut Rng, n: usize) -> usize {
    use rand::Rng as _;
    assert!(n > 0, "uniform_below: n must be positive");
    let n64 = n as u64;
    let threshold = n64.wrapping_neg() % n64;
    loop {
        let r = rng.next_u64();
        let m = (r as u128) * (n64 as u128);
        if (m as u64) >= threshold {
            return (m >> 64) as usize;
        }
    }
}

/// A uniform `f64` in `[0, 1)` with 53 random bits.
pub fn uniform01(rng: &mut Rng) -> f64 {
    use rand::Rng as _;
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A standard normal draw (Box–Muller on two uniforms; value-stable).
pub fn standard_normal(rng: &mut Rng) -> f64 {
    loop {
        let u1 = uniform01(rng);
        if u1 > 0.0 {
            let u2 = uniform01(rng);
            return (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        }
    }
}

/// A vector of `n` standard normal draws.
pub fn normal_vector(rng: &mut Rng, n: usize) -> Vector {
    Vector::from_fn(n, |_| standard_normal(rng))
}

/// In-place Fisher–Yates shuffle (value-stable).
pub fn shuffle<T>(rng: &mut Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = uniform_below(rng, i + 1);
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_naive_loops() {
        let a = from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        let b = from_slice(&[0.5, -1.0, 2.0, 0.0, 1.0]);
        assert_eq!(a.dot(&b), 0.5 - 2.0 + 6.0 + 0.0 + 5.0);
        let mut c = a.clone();
        c.axpy(2.0, &b);
        assert_eq!(c.as_slice(), &[2.0, 0.0, 7.0, 4.0, 7.0]);
        c.scale_add(0.5, &a);
        assert_eq!(c.as_slice(), &[2.0, 2.0, 6.5, 6.0, 8.5]);
        assert_eq!(a.norm_sq(), 55.0);
        assert_eq!(from_slice(&[-3.0, 2.0]).max_abs(), 3.0);
        assert!(from_slice(&[f64::NAN]).max_abs().is_nan());
        // Longer than one 8-lane chunk: the maximum in a chunk or in the tail, a NaN anywhere
        // (also before a larger value), an infinity.
        let mut v: Vec<f64> = (0..21).map(|i| (i as f64 - 10.0) * 0.5).collect();
        assert_eq!(from_slice(&v).max_abs(), 5.0);
        v[19] = -7.5;
        assert_eq!(from_slice(&v).max_abs(), 7.5);
        for at in [0, 9, 20] {
            let mut w = v.clone();
            w[at] = f64::NAN;
            assert!(from_slice(&w).max_abs().is_nan(), "NaN at {at}");
        }
        v[3] = f64::NEG_INFINITY;
        assert_eq!(from_slice(&v).max_abs(), f64::INFINITY);
    }

    #[test]
    fn uniform_below_is_in_range_and_covers() {
        let mut rng = rng_from_seed(3, 0);
        let mut seen = [0usize; 7];
        for _ in 0..7000 {
            seen[uniform_below(&mut rng, 7)] += 1;
        }
        // Each bucket expects 1000; 5 sigma of a binomial(7000, 1/7) is about 150.
        assert!(seen.iter().all(|&c| (850..1150).contains(&c)), "{seen:?}");
    }

    #[test]
    fn normal_draws_have_unit_variance() {
        let mut rng = rng_from_seed(11, 0);
        let n = 20_000;
        let draws: Vec<f64> = (0..n).map(|_| standard_normal(&mut rng)).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / n as f64;
        // Standard errors: mean 1/sqrt(n) = 0.007, variance sqrt(2/n) = 0.01; allow 5 sigma.
        assert!(mean.abs() < 0.035, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "var {var}");
    }

    #[test]
    fn serde_vector_round_trips_bits() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Holder {
            #[serde(with = "serde_vector")]
            v: Vector,
        }
        let v = from_slice(&[0.1, 1.0 / 3.0, -2.5e-300, f64::MAX]);
        let json = serde_json::to_string(&Holder { v: v.clone() }).unwrap();
        let back: Holder = serde_json::from_str(&json).unwrap();
        for (a, b) in v.as_slice().iter().zip(back.v.as_slice()) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
    }
}
