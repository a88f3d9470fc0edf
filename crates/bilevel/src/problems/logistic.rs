//! Logistic losses over a design matrix: the fused streaming kernels shared by
//! [`logreg_hpo`](super::logreg_hpo) and [`data_cleaning`](super::data_cleaning).
//!
//! Binary: labels b ∈ {−1, +1}, model w ∈ ℝ^d (plus an intercept when enabled),
//! ℓᵢ(w) = log(1 + exp(−bᵢ xᵢ·w)). Multiclass: classes 0..K, model W ∈ ℝ^{d×K} stored
//! feature-major (entry (j, c) at `j·K + c`; an intercept adds a last row), cross-entropy
//! ℓᵢ(W) = log Σ_c exp(zᵢc) − zᵢ,bᵢ with zᵢ = Wᵀxᵢ. Per-sample derivatives:
//! ∇ℓᵢ = xᵢ ⊗ rᵢ with r = −b σ(−b z) (binary) or p − e_b (multiclass, p = softmax z), and
//! ∇²ℓᵢ·V = xᵢ ⊗ (σ(z)σ(−z) u) or xᵢ ⊗ (p⊙u − p (p·u)) with u = Vᵀxᵢ.
//!
//! ## How the kernels run
//! - **One pass** (`LogisticData::pass`) computes any subset of {losses, ∇, ∇²·v, ∇ℓᵢ·v per
//!   sample} at one point on one batch: the margins x·w and x·v come from one read of each row,
//!   the nonlinearity is applied to a chunk of 64 rows at once (a branch-free `exp` that
//!   vectorises), and the gradient and Hessian-vector rows are accumulated in one more read of
//!   the (now cached) rows.
//! - **Storage**: dense rows are stored row-major and zero-padded to a multiple of 8 entries
//!   (lane-aligned, no tail loops); a CSR design with at least [`DENSE_DENSITY`] non-zeros is
//!   streamed from such a dense copy too (faster than index gathers), unless the caller asks
//!   for the storage as given. Multiclass dense kernels work on a class-major copy of W.
//! - **Minibatches** are read in place through their indices (no gather copies).
//! - **Threads**: full batches are split into fixed blocks of rows; their number depends on n
//!   and the model size only, never on the thread count. The blocks run in parallel (rayon),
//!   their sums are added in block order and per-sample callbacks run in row order
//!   afterwards: results are the same bits with any number of threads (`RAYON_NUM_THREADS=1`
//!   included) and full passes use every core. Minibatches (below 2,048 rows) run on one
//!   thread (see `LogisticData::blocks` for the measurement).
//! - **SIMD**: every pass runs under `kernels::dispatch` (AVX-512 or AVX2 when available, capped
//!   by `BILEVEL_SIMD`); values do not depend on the instruction set (`tests/simd_levels.rs`).

use std::cell::Cell;
use std::ops::Range;

use rayon::prelude::*;

use super::common::{check_batch, sigmoid, with_native_scratch, with_scratch};
use super::kernels::{
    self, Elem, LANES, Lanes, LanesMut, Simd8, WithLanes, axpy_full, axpy_row, axpy2_row, dot_full,
    dot_row, dot2_row, padded_len,
};
use crate::core::{Batch, Fused, Objective, Vector, VectorExt};
use crate::data::{CsrMatrix, Design};

/// Targets of a logistic loss.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// ±1 labels.
    Binary(Vec<f64>),
    /// Class indices in 0..k.
    Multiclass {
        /// Class of each sample.
        class: Vec<u32>,
        /// Number of classes K.
        k: usize,
    },
}

/// A CSR design with at least this fraction of non-zeros is streamed from a dense copy (unless
/// the storage is forced): a dense row costs one multiply-add per entry in lane-wide loops, a
/// sparse one an index load and a gather per non-zero.
pub const DENSE_DENSITY: f64 = 0.25;

/// Rows per chunk of the minibatch pipeline (margins, then nonlinearity, then updates).
const CHUNK: usize = 32;
/// How many rows ahead the binary kernels ask for a row.
const PREFETCH_ROWS: usize = 12;
/// Full batches with fewer multiply-adds than this run on one thread.
const PAR_MIN_WORK: usize = 1 << 16;
/// Values recorded per sample by a parallel block: (i, ℓᵢ, ∇ℓᵢ·v, 1/|B|).
const SAMPLE_RECORD: usize = 4;
/// Rows per parallel block of a full batch (before the caps below).
const BLOCK_ROWS: usize = 2048;
/// At most this many parallel blocks.
const MAX_BLOCKS: usize = 64;
/// Memory of the per-block partial sums, in f64 (limits the block count for big outputs).
const PARTIAL_BUDGET: usize = 1 << 22;
/// The most entries (n × K) a table of held probabilities may have ([`LogisticData::hold`]):
/// 256 MiB.
pub(crate) const HOLD_MAX_ENTRIES: usize = 1 << 25;

/// Per-sample class probabilities at one model, for repeated Hessian products there
/// ([`LogisticData::hold`]).
pub(crate) struct Held {
    k: usize,
    p: Vec<f64>,
}
/// Largest K with stack buffers in the multiclass kernels (beyond it, one heap buffer per call).
const STACK_K: usize = 32;

/// Row-major rows zero-padded to a multiple of [`LANES`] entries, the first row starting on a
/// 64-byte boundary: with a stride of whole lane chunks every chunk is one cache line, so a
/// 512-bit load never straddles two lines.
#[derive(Debug)]
struct PaddedRows<E = f64> {
    stride: usize,
    /// Index in `values` of the first row's first entry (the 64-byte aligned one).
    offset: usize,
    values: Vec<E>,
}

/// Spare entries allocated before the rows, room to move the first row to a 64-byte boundary
/// (8 for f64, 16 for f32).
fn spare<E>() -> usize {
    64 / std::mem::size_of::<E>()
}

/// Entries before the first 64-byte boundary of `v` (`v` has at least [`spare`] spare entries).
fn aligned_offset<E>(v: &[E]) -> usize {
    let misalignment = v.as_ptr().addr() % 64;
    (64 - misalignment) % 64 / std::mem::size_of::<E>()
}

impl<E: Elem> PaddedRows<E> {
    /// `n` zero rows of `stride` entries, aligned.
    fn zeros(n: usize, stride: usize) -> Self {
        let values = vec![E::default(); n * stride + spare::<E>()];
        let offset = aligned_offset(&values);
        Self {
            stride,
            offset,
            values,
        }
    }
    fn from_design(design: &Design) -> Self {
        let (n, d) = (design.rows(), design.cols());
        let mut rows = Self::zeros(n, padded_len(d));
        match design {
            Design::Dense(m) => {
                for i in 0..n {
                    for (dst, &v) in rows.row_mut(i).iter_mut().zip(m.row(i)) {
                        *dst = E::narrow(v);
                    }
                }
            }
            Design::Sparse(m) => {
                for i in 0..n {
                    let (idx, val) = m.row(i);
                    let row = rows.row_mut(i);
                    for (&j, &v) in idx.iter().zip(val) {
                        row[j as usize] = E::narrow(v);
                    }
                }
            }
        }
        rows
    }
    /// The same rows in another stored type.
    fn convert<F: Elem>(&self) -> PaddedRows<F> {
        let mut out = PaddedRows::zeros(self.n(), self.stride);
        for i in 0..self.n() {
            for (dst, &v) in out.row_mut(i).iter_mut().zip(self.row(i)) {
                *dst = F::narrow(v.wide());
            }
        }
        out
    }
    #[inline(always)]
    fn row(&self, i: usize) -> &[E] {
        let start = self.offset + i * self.stride;
        &self.values[start..start + self.stride]
    }
    fn row_mut(&mut self, i: usize) -> &mut [E] {
        let start = self.offset + i * self.stride;
        &mut self.values[start..start + self.stride]
    }
    fn n(&self) -> usize {
        (self.values.len() - spare::<E>()) / self.stride.max(1)
    }
}

impl<E: Elem> Clone for PaddedRows<E> {
    /// A copy aligned in its own allocation (a plain copy of the vector could start elsewhere
    /// modulo 64 bytes).
    fn clone(&self) -> Self {
        let mut copy = Self::zeros(self.n(), self.stride);
        for i in 0..self.n() {
            copy.row_mut(i).copy_from_slice(self.row(i));
        }
        copy
    }
}

/// CSR rows whose values are stored as `E`.
#[derive(Clone, Debug)]
struct SparseRows<E> {
    indptr: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<E>,
}

impl<E: Elem> SparseRows<E> {
    fn from_matrix(m: CsrMatrix) -> Self {
        let (indptr, indices, values) = m.into_parts();
        Self {
            indptr,
            indices,
            values: values.into_iter().map(E::narrow).collect(),
        }
    }
    /// The same rows in another stored type.
    fn convert<F: Elem>(&self) -> SparseRows<F> {
        SparseRows {
            indptr: self.indptr.clone(),
            indices: self.indices.clone(),
            values: self.values.iter().map(|v| F::narrow(v.wide())).collect(),
        }
    }
    /// Row `i`: (column indices, values).
    #[inline(always)]
    fn row(&self, i: usize) -> (&[u32], &[E]) {
        let (a, b) = (self.indptr[i], self.indptr[i + 1]);
        (&self.indices[a..b], &self.values[a..b])
    }
    fn nnz(&self) -> usize {
        self.values.len()
    }
}

/// The kernel storage of a design, in one stored type.
#[derive(Clone, Debug)]
enum Rows<E: Elem> {
    Dense(PaddedRows<E>),
    Sparse(SparseRows<E>),
}

impl<E: Elem> Rows<E> {
    fn convert<F: Elem>(&self) -> Rows<F> {
        match self {
            Rows::Dense(r) => Rows::Dense(r.convert()),
            Rows::Sparse(m) => Rows::Sparse(m.convert()),
        }
    }
}

/// The kernel storage of a design: its values in f64 (the default) or f32
/// ([`Precision::F32`]).
#[derive(Clone, Debug)]
enum Store {
    F64(Rows<f64>),
    F32(Rows<f32>),
}

/// `$body` with `$r` bound to the store's [`Rows`], whatever its stored type (the body is
/// compiled once per type).
macro_rules! with_rows {
    ($store:expr, $r:ident => $body:expr) => {
        match $store {
            Store::F64($r) => $body,
            Store::F32($r) => $body,
        }
    };
}

/// The stored type of a design's values. Arithmetic is f64 in both: f32 storage halves the
/// bytes a pass streams, and changes the results only by the rounding of the data to f32 (the
/// results are those of the f64 storage of the rounded data, bit for bit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// f64 values: the data as given.
    #[default]
    F64,
    /// f32 values, rounded to nearest once when the problem is built.
    F32,
}

impl Precision {
    /// The name used in configs and reports (`"f64"`, `"f32"`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::F64 => "f64",
            Precision::F32 => "f32",
        }
    }
}

thread_local! {
    /// Bytes of data (design rows and targets) the passes called from this thread have
    /// streamed: the data traffic of an iteration, which bounds its time from below on a
    /// machine whose caches cannot hold the data (`bilevel bench` reports it).
    static STREAMED_BYTES: Cell<u64> = const { Cell::new(0) };
}

/// Bytes of design rows and targets streamed by the logistic data kernels for passes called
/// from this thread since it started (each pass counts its rows once, also when its blocks run
/// in parallel: a padded dense row is its stride of f64, a sparse row the average bytes of a
/// CSR row, plus the target). Take differences around a piece of work.
pub fn streamed_bytes() -> u64 {
    STREAMED_BYTES.with(Cell::get)
}

/// A design with logistic targets.
#[derive(Clone, Debug)]
pub struct LogisticData {
    store: Store,
    targets: Targets,
    intercept: bool,
    n: usize,
    d: usize,
}

/// Row access of the binary kernels.
trait RowOps: Sync {
    type In<'a>: Sync;
    type Out<'a>;
    fn input<'a>(&self, v: &'a [f64]) -> Self::In<'a>;
    fn output<'a>(&self, v: &'a mut [f64]) -> Self::Out<'a>;
    fn finish(&self, o: Self::Out<'_>);
    fn dot(&self, i: usize, a: &Self::In<'_>) -> f64;
    fn dot2(&self, i: usize, a: &Self::In<'_>, b: &Self::In<'_>) -> (f64, f64);
    fn axpy(&self, i: usize, c: f64, o: &mut Self::Out<'_>);
    fn axpy2(&self, i: usize, c1: f64, c2: f64, o1: &mut Self::Out<'_>, o2: &mut Self::Out<'_>);
    /// Asks for row `i` in L1 ahead of its use (a hint: no effect on any value).
    #[inline(always)]
    fn prefetch(&self, i: usize) {
        let _ = i;
    }
}

impl<E: Elem> RowOps for PaddedRows<E> {
    type In<'a> = Lanes<'a>;
    type Out<'a> = LanesMut<'a>;
    #[inline(always)]
    fn input<'a>(&self, v: &'a [f64]) -> Lanes<'a> {
        Lanes::new(v)
    }
    #[inline(always)]
    fn output<'a>(&self, v: &'a mut [f64]) -> LanesMut<'a> {
        LanesMut::new(v)
    }
    #[inline(always)]
    fn finish(&self, o: LanesMut<'_>) {
        o.finish()
    }
    #[inline(always)]
    fn dot(&self, i: usize, a: &Lanes<'_>) -> f64 {
        dot_row(self.row(i), a)
    }
    #[inline(always)]
    fn dot2(&self, i: usize, a: &Lanes<'_>, b: &Lanes<'_>) -> (f64, f64) {
        dot2_row(self.row(i), a, b)
    }
    #[inline(always)]
    fn axpy(&self, i: usize, c: f64, o: &mut LanesMut<'_>) {
        axpy_row(c, self.row(i), o)
    }
    #[inline(always)]
    fn axpy2(&self, i: usize, c1: f64, c2: f64, o1: &mut LanesMut<'_>, o2: &mut LanesMut<'_>) {
        axpy2_row(c1, c2, self.row(i), o1, o2)
    }
}

/// Padded dense rows of exactly `NCH` lane chunks (d ≤ 8·NCH), with explicit SIMD (`S`): the
/// model, the direction and the output accumulators live in registers for the whole block. The
/// rows are viewed once as whole `NCH`-chunk arrays, so a row access is one bounds check.
struct Fixed<'a, const NCH: usize, S, E = f64> {
    rows: &'a [[[E; LANES]; NCH]],
    s: S,
}

impl<'a, const NCH: usize, S: Simd8, E: Elem> Fixed<'a, NCH, S, E> {
    /// The view of `r` (stride `NCH` lane chunks).
    #[inline(always)]
    fn new(r: &'a PaddedRows<E>, s: S) -> Self {
        debug_assert_eq!(r.stride, NCH * LANES);
        let all = &r.values[r.offset..r.offset + r.n() * r.stride];
        Self {
            rows: all.as_chunks::<LANES>().0.as_chunks::<NCH>().0,
            s,
        }
    }
    #[inline(always)]
    fn row(&self, i: usize) -> &[[E; LANES]; NCH] {
        &self.rows[i]
    }
    /// Lane chunk `c` of row `r`, widened to f64 lanes.
    #[inline(always)]
    fn chunk(&self, r: &[[E; LANES]; NCH], c: usize) -> S::V {
        self.s.load(&E::lanes(&r[c]))
    }
    #[inline(always)]
    fn lanes(&self, v: &[f64]) -> [S::V; NCH] {
        let mut a = [[0.0; LANES]; NCH];
        a.as_flattened_mut()[..v.len()].copy_from_slice(v);
        a.map(|c| self.s.load(&c))
    }
}

/// Output accumulators of [`Fixed`] and where they go.
struct FixedOut<'a, const NCH: usize, V> {
    acc: [V; NCH],
    dst: &'a mut [f64],
}

impl<const NCH: usize, S: Simd8, E: Elem> RowOps for Fixed<'_, NCH, S, E> {
    type In<'a> = [S::V; NCH];
    type Out<'a> = FixedOut<'a, NCH, S::V>;
    #[inline(always)]
    fn input(&self, v: &[f64]) -> [S::V; NCH] {
        self.lanes(v)
    }
    #[inline(always)]
    fn output<'a>(&self, v: &'a mut [f64]) -> FixedOut<'a, NCH, S::V> {
        FixedOut {
            acc: self.lanes(v),
            dst: v,
        }
    }
    #[inline(always)]
    fn finish(&self, o: FixedOut<'_, NCH, S::V>) {
        let acc = o.acc.map(|v| self.s.store(v));
        let n = o.dst.len();
        o.dst.copy_from_slice(&acc.as_flattened()[..n]);
    }
    #[inline(always)]
    fn dot(&self, i: usize, a: &[S::V; NCH]) -> f64 {
        let (s, r) = (self.s, self.row(i));
        let mut acc = s.mul(self.chunk(r, 0), a[0]);
        for c in 1..NCH {
            acc = s.add(acc, s.mul(self.chunk(r, c), a[c]));
        }
        s.hsum(acc)
    }
    #[inline(always)]
    fn dot2(&self, i: usize, a: &[S::V; NCH], b: &[S::V; NCH]) -> (f64, f64) {
        let (s, r) = (self.s, self.row(i));
        let x = self.chunk(r, 0);
        let (mut acc_a, mut acc_b) = (s.mul(x, a[0]), s.mul(x, b[0]));
        for c in 1..NCH {
            let x = self.chunk(r, c);
            acc_a = s.add(acc_a, s.mul(x, a[c]));
            acc_b = s.add(acc_b, s.mul(x, b[c]));
        }
        (s.hsum(acc_a), s.hsum(acc_b))
    }
    #[inline(always)]
    fn axpy(&self, i: usize, c: f64, o: &mut FixedOut<'_, NCH, S::V>) {
        let (s, r) = (self.s, self.row(i));
        let cv = s.splat(c);
        for ch in 0..NCH {
            o.acc[ch] = s.add(o.acc[ch], s.mul(cv, self.chunk(r, ch)));
        }
    }
    #[inline(always)]
    fn axpy2(
        &self,
        i: usize,
        c1: f64,
        c2: f64,
        o1: &mut FixedOut<'_, NCH, S::V>,
        o2: &mut FixedOut<'_, NCH, S::V>,
    ) {
        let (s, r) = (self.s, self.row(i));
        let (cv1, cv2) = (s.splat(c1), s.splat(c2));
        for ch in 0..NCH {
            let x = self.chunk(r, ch);
            o1.acc[ch] = s.add(o1.acc[ch], s.mul(cv1, x));
            o2.acc[ch] = s.add(o2.acc[ch], s.mul(cv2, x));
        }
    }
    #[inline(always)]
    fn prefetch(&self, i: usize) {
        for chunk in self.row(i) {
            self.s.prefetch(chunk);
        }
    }
}

impl<E: Elem> RowOps for SparseRows<E> {
    type In<'a> = &'a [f64];
    type Out<'a> = &'a mut [f64];
    #[inline(always)]
    fn input<'a>(&self, v: &'a [f64]) -> &'a [f64] {
        v
    }
    #[inline(always)]
    fn output<'a>(&self, v: &'a mut [f64]) -> &'a mut [f64] {
        v
    }
    #[inline(always)]
    fn finish(&self, _: &mut [f64]) {}
    #[inline(always)]
    fn dot(&self, i: usize, a: &&[f64]) -> f64 {
        let (idx, val) = self.row(i);
        let mut s = 0.0;
        for (&j, &x) in idx.iter().zip(val) {
            let x = x.wide();
            s += x * a[j as usize];
        }
        s
    }
    #[inline(always)]
    fn dot2(&self, i: usize, a: &&[f64], b: &&[f64]) -> (f64, f64) {
        let (idx, val) = self.row(i);
        let (mut s, mut t) = (0.0, 0.0);
        for (&j, &x) in idx.iter().zip(val) {
            let x = x.wide();
            s += x * a[j as usize];
            t += x * b[j as usize];
        }
        (s, t)
    }
    #[inline(always)]
    fn axpy(&self, i: usize, c: f64, o: &mut &mut [f64]) {
        let (idx, val) = self.row(i);
        for (&j, &x) in idx.iter().zip(val) {
            let x = x.wide();
            o[j as usize] += c * x;
        }
    }
    #[inline(always)]
    fn axpy2(&self, i: usize, c1: f64, c2: f64, o1: &mut &mut [f64], o2: &mut &mut [f64]) {
        let (idx, val) = self.row(i);
        for (&j, &x) in idx.iter().zip(val) {
            let x = x.wide();
            o1[j as usize] += c1 * x;
            o2[j as usize] += c2 * x;
        }
    }
}

/// Row access of the multiclass kernels, in the store's native layout of W: class-major padded
/// (dense) or feature-major (CSR).
trait MultiOps: Sync {
    /// z ← W_nativeᵀ x_i (length k), no intercept.
    fn outputs(&self, i: usize, w: &[f64], z: &mut [f64]);
    /// out_native ← out_native + x_i ⊗ c.
    fn back(&self, i: usize, c: &[f64], out: &mut [f64]);
    /// [`outputs`](Self::outputs) for [`GROUP`] rows at once: z holds the k outputs of row r at
    /// `r·k`. Each equals the single-row result bit for bit.
    #[inline(always)]
    fn outputs_group(&self, rows: &[usize; GROUP], w: &[f64], z: &mut [f64]) {
        let k = z.len() / GROUP;
        for (&i, zr) in rows.iter().zip(z.chunks_exact_mut(k)) {
            self.outputs(i, w, zr);
        }
    }
    /// [`back`](Self::back) for [`GROUP`] rows at once (c of row r at `r·k`), the rows added in
    /// order: the result equals `GROUP` successive single-row calls bit for bit.
    #[inline(always)]
    fn back_group(&self, rows: &[usize; GROUP], c: &[f64], out: &mut [f64]) {
        let k = c.len() / GROUP;
        for (&i, cr) in rows.iter().zip(c.chunks_exact(k)) {
            self.back(i, cr, out);
        }
    }
}

/// A CSR design seen with a model whose feature rows are padded to `NV` lane chunks (K ≤ 8·NV
/// classes, zeros beyond K): every non-zero costs `NV` full-width multiply-adds. The forward
/// product keeps up to four accumulator sets (non-zero t in set t mod sets) to cut the
/// add-latency chain.
struct PaddedCsr<'a, const NV: usize, E> {
    m: &'a SparseRows<E>,
}

impl<const NV: usize, E: Elem> MultiOps for PaddedCsr<'_, NV, E> {
    #[inline(always)]
    fn outputs(&self, i: usize, w: &[f64], z: &mut [f64]) {
        let (idx, val) = self.m.row(i);
        let w = w.as_chunks::<LANES>().0;
        // `sets` accumulator sets (4 for one lane chunk, 2 for two, else 1: at most 8 AVX2
        // registers), non-zero t going to set t mod sets, added pairwise at the end (unused
        // sets stay zero).
        let sets = (4 / NV).max(1);
        let mut acc = [[[0.0; LANES]; NV]; 4];
        let quads = idx.len() / sets;
        for t in 0..quads {
            for (s, set) in acc.iter_mut().enumerate().take(sets) {
                let j = idx[sets * t + s] as usize * NV;
                let a = val[sets * t + s].wide();
                let wj = &w[j..j + NV];
                for q in 0..NV {
                    for l in 0..LANES {
                        set[q][l] += a * wj[q][l];
                    }
                }
            }
        }
        for (s, set) in acc.iter_mut().enumerate().take(idx.len() - sets * quads) {
            let j = idx[sets * quads + s] as usize * NV;
            let a = val[sets * quads + s].wide();
            for q in 0..NV {
                for l in 0..LANES {
                    set[q][l] += a * w[j + q][l];
                }
            }
        }
        for (c, zc) in z.iter_mut().enumerate() {
            let (q, l) = (c / LANES, c % LANES);
            *zc = (acc[0][q][l] + acc[1][q][l]) + (acc[2][q][l] + acc[3][q][l]);
        }
    }
    #[inline(always)]
    fn back(&self, i: usize, c: &[f64], out: &mut [f64]) {
        let mut coef = [[0.0; LANES]; NV];
        for (q, &cc) in c.iter().enumerate() {
            coef[q / LANES][q % LANES] = cc;
        }
        let (idx, val) = self.m.row(i);
        let out = out.as_chunks_mut::<LANES>().0;
        for (&j, &a) in idx.iter().zip(val) {
            let (j, a) = (j as usize * NV, a.wide());
            let o = &mut out[j..j + NV];
            for q in 0..NV {
                for l in 0..LANES {
                    o[q][l] += a * coef[q][l];
                }
            }
        }
    }
}

/// The layout a multiclass kernel works in: its length, where the K biases start, and the
/// copies from and to the feature-major model layout.
struct NativeLayout<In, Out> {
    len: usize,
    bias_at: usize,
    to_native: In,
    from_native: Out,
}

/// The entries one native model copy of `len` occupies in the scratch: `len` rounded up to whole
/// 64-byte lines, so that consecutive copies stay aligned.
fn native_slot(len: usize) -> usize {
    len.next_multiple_of(LANES)
}

/// Feature-major W (rows of k, the bias row last) → the same rows padded to `kp` entries.
fn to_padded_rows(w: &[f64], rows: usize, k: usize, kp: usize, out: &mut [f64]) {
    for (src, dst) in w.chunks_exact(k).take(rows).zip(out.chunks_exact_mut(kp)) {
        dst[..k].copy_from_slice(src);
        dst[k..].fill(0.0);
    }
}

/// The inverse of [`to_padded_rows`].
fn from_padded_rows(padded: &[f64], rows: usize, k: usize, kp: usize, out: &mut [f64]) {
    for (src, dst) in padded
        .chunks_exact(kp)
        .take(rows)
        .zip(out.chunks_exact_mut(k))
    {
        dst.copy_from_slice(&src[..k]);
    }
}

/// Rows per register block of the dense multiclass kernel: each chunk of W (forward) and of the
/// output (backward) is read once per GROUP rows instead of once per row, and GROUP independent
/// accumulator chains hide the add latency. The values do not change (see [`MultiOps`]).
const GROUP: usize = 4;

impl<E: Elem> MultiOps for PaddedRows<E> {
    #[inline(always)]
    fn outputs(&self, i: usize, w: &[f64], z: &mut [f64]) {
        let row = self.row(i);
        for (zc, wc) in z.iter_mut().zip(w.chunks_exact(self.stride)) {
            *zc = dot_full(row, wc);
        }
    }
    #[inline(always)]
    fn back(&self, i: usize, c: &[f64], out: &mut [f64]) {
        let row = self.row(i);
        for (&cc, oc) in c.iter().zip(out.chunks_exact_mut(self.stride)) {
            axpy_full(cc, row, oc);
        }
    }
    #[inline(always)]
    fn outputs_group(&self, rows: &[usize; GROUP], w: &[f64], z: &mut [f64]) {
        let k = z.len() / GROUP;
        let x = rows.map(|i| self.row(i));
        for (c, wc) in w.chunks_exact(self.stride).take(k).enumerate() {
            let dots = kernels::dot_full_rows(x, wc);
            for r in 0..GROUP {
                z[r * k + c] = dots[r];
            }
        }
    }
    #[inline(always)]
    fn back_group(&self, rows: &[usize; GROUP], c: &[f64], out: &mut [f64]) {
        let k = c.len() / GROUP;
        let x = rows.map(|i| self.row(i));
        for (cls, oc) in out.chunks_exact_mut(self.stride).take(k).enumerate() {
            let coef: [f64; GROUP] = std::array::from_fn(|r| c[r * k + cls]);
            kernels::axpy_full_rows(coef, x, oc);
        }
    }
}

impl<E: Elem> MultiOps for SparseRows<E> {
    #[inline(always)]
    fn outputs(&self, i: usize, w: &[f64], z: &mut [f64]) {
        let k = z.len();
        z.fill(0.0);
        let (idx, val) = self.row(i);
        for (&j, &a) in idx.iter().zip(val) {
            let a = a.wide();
            let wj = &w[j as usize * k..(j as usize + 1) * k];
            for (zc, &wc) in z.iter_mut().zip(wj) {
                *zc += a * wc;
            }
        }
    }
    #[inline(always)]
    fn back(&self, i: usize, c: &[f64], out: &mut [f64]) {
        let k = c.len();
        let (idx, val) = self.row(i);
        for (&j, &a) in idx.iter().zip(val) {
            let a = a.wide();
            let oj = &mut out[j as usize * k..(j as usize + 1) * k];
            for (o, &cc) in oj.iter_mut().zip(c) {
                *o += a * cc;
            }
        }
    }
}

/// Rows of one block: a range (full batch) or indices (minibatch).
#[derive(Clone, Copy)]
enum RowSet<'a> {
    Range(usize, usize),
    Indices(&'a [usize]),
}

impl RowSet<'_> {
    #[inline(always)]
    fn len(&self) -> usize {
        match self {
            RowSet::Range(a, b) => b - a,
            RowSet::Indices(idx) => idx.len(),
        }
    }
    /// Row `pos` of the set.
    #[inline(always)]
    fn at(&self, pos: usize) -> usize {
        match self {
            RowSet::Range(a, _) => a + pos,
            RowSet::Indices(all) => all[pos],
        }
    }
    /// Writes rows pos..pos+n of the set into `idx`.
    #[inline(always)]
    fn fill(&self, pos: usize, idx: &mut [usize]) {
        match self {
            RowSet::Range(a, _) => {
                for (k, slot) in idx.iter_mut().enumerate() {
                    *slot = a + pos + k;
                }
            }
            RowSet::Indices(all) => idx.copy_from_slice(&all[pos..pos + idx.len()]),
        }
    }
}

/// The per-sample callback: `(i, ℓᵢ, ∇ℓᵢ·v, 1/|B|)` (ℓᵢ only when losses are requested, 0
/// otherwise; ∇ℓᵢ·v only with a direction v, 0 otherwise).
pub(crate) type OnSample<'a> = &'a mut dyn FnMut(usize, f64, f64, f64);

/// The per-sample weights w(i) of a pass. A closed set of forms rather than a closure type: every
/// kernel is then compiled once per instruction set and stored type, not once more for each
/// call site's closure (that multiplied the crate's compile time).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Weights<'a> {
    /// w(i) = 1.
    Uniform,
    /// w(i) = σ(xᵢ): data cleaning's weighted training loss.
    Sigmoid(&'a [f64]),
    /// w(i) = uᵢ σ'(xᵢ) = uᵢ σ(xᵢ)(1 − σ(xᵢ)): data cleaning's ∇²ᵧₓ g u.
    SigmoidSlope {
        /// The outer variable.
        x: &'a [f64],
        /// The direction.
        u: &'a [f64],
    },
    /// w(i) given for every sample.
    #[cfg(test)]
    Given(&'a [f64]),
}

impl Weights<'_> {
    /// w(i).
    #[inline(always)]
    pub(crate) fn at(&self, i: usize) -> f64 {
        match *self {
            Weights::Uniform => 1.0,
            Weights::Sigmoid(x) => sigmoid(x[i]),
            Weights::SigmoidSlope { x, u } => {
                let s = sigmoid(x[i]);
                u[i] * (s * (1.0 - s))
            }
            #[cfg(test)]
            Weights::Given(w) => w[i],
        }
    }
}

/// Inputs shared by the blocks of one pass (native layout).
struct Job<'a> {
    w: &'a [f64],
    v: Option<&'a [f64]>,
    weight: Weights<'a>,
    inv: f64,
    want_loss: bool,
    /// Class probabilities held per sample (n × K, [`LogisticData::hold`]): the multiclass
    /// blocks read p here instead of computing W x and its softmax (Hessian products only).
    held: Option<&'a [f64]>,
}

/// One [`LogisticData::pass`], waiting for its instruction set.
struct PassOp<'a, 'o, 'p> {
    data: &'a LogisticData,
    job: Job<'a>,
    rows: RowSet<'a>,
    grad: Option<&'o mut [f64]>,
    hvp: Option<&'o mut [f64]>,
    on_sample: Option<OnSample<'p>>,
    /// Room for the model copies of the multiclass kernels ([`LogisticData::native_len`]),
    /// taken before the dispatch: a buffer borrowed inside it would put the kernel in a
    /// closure compiled without the dispatch's instruction set (it ran 5× slower).
    native: &'o mut [f64],
}

impl WithLanes for PassOp<'_, '_, '_> {
    type Output = f64;
    /// The fixed-width kernels: binary on dense rows of at most four lane chunks, and
    /// multiclass on CSR rows with at most four lane chunks of classes ([`PaddedCsr`]).
    fn wide(&self) -> bool {
        let dense_stride = self.data.dense_stride();
        match (dense_stride, &self.data.targets) {
            (Some(stride), Targets::Binary(_)) => stride / LANES <= 4,
            // K ≤ 8 (covtype's 7 classes) runs 2× faster on 512-bit registers, and K = 10
            // (MNIST, two lane chunks) 3–9 % faster (`bilevel bench`, covtype and hyperclean
            // shapes, 2026-12-05). Wider K would spill the accumulators.
            (None, Targets::Multiclass { k, .. }) => *k <= 2 * LANES,
            _ => false,
        }
    }
    #[inline(always)]
    fn run<S: Simd8>(self, s: S) -> f64 {
        let Self {
            data,
            job,
            rows,
            grad,
            hvp,
            on_sample,
            native,
        } = self;
        with_rows!(&data.store, r => data.pass_rows(s, r, &job, rows, grad, hvp, on_sample, native))
    }
}

/// Where each output sits in a block's partial buffer.
#[derive(Clone, Copy)]
struct Layout {
    /// Native output length (model dimension in the native layout).
    len: usize,
    grad: bool,
    hvp: bool,
}

impl Layout {
    /// Partial length: gradient, Hessian product, then the weighted loss sum.
    fn partial(&self) -> usize {
        self.len * (usize::from(self.grad) + usize::from(self.hvp)) + 1
    }
    fn split<'a>(&self, part: &'a mut [f64]) -> (Option<&'a mut [f64]>, Option<&'a mut [f64]>) {
        let (g, rest) = part.split_at_mut(if self.grad { self.len } else { 0 });
        let (h, _) = rest.split_at_mut(if self.hvp { self.len } else { 0 });
        (self.grad.then_some(g), self.hvp.then_some(h))
    }
}

/// σ pieces of a binary margin m = b·z: (t = e^{−|m|}, σ(−m), σ(m)σ(−m)).
#[inline(always)]
fn binary_pieces(m: f64) -> (f64, f64, f64) {
    let t = kernels::exp(-m.abs());
    let q = 1.0 / (1.0 + t);
    let s = if m >= 0.0 { t * q } else { q };
    (t, s, t * q * q)
}

/// log(1 + e^{−m}) from m and t = e^{−|m|} (branch-free, vectorisable).
#[inline(always)]
fn softplus_neg(m: f64, t: f64) -> f64 {
    let l = kernels::ln_1p_unit(t);
    if m >= 0.0 { l } else { -m + l }
}

impl LogisticData {
    /// Data for a logistic loss; `intercept` adds a bias (a last row of W, a last entry of w).
    /// A CSR design with at least [`DENSE_DENSITY`] non-zeros is streamed from a dense copy.
    pub fn new(design: Design, targets: Targets, intercept: bool) -> Self {
        let dense = !design.is_sparse() || design.density() >= DENSE_DENSITY;
        Self::with_storage(design, targets, intercept, dense)
    }

    /// As [`new`](Self::new), with the kernel storage chosen by the caller (`dense` false keeps a
    /// CSR design sparse; a dense design is always dense).
    pub fn with_storage(design: Design, targets: Targets, intercept: bool, dense: bool) -> Self {
        let (n, d) = (design.rows(), design.cols());
        let store = Store::F64(match design {
            Design::Sparse(m) if !dense => Rows::Sparse(SparseRows::from_matrix(m)),
            other => Rows::Dense(PaddedRows::from_design(&other)),
        });
        Self {
            store,
            targets,
            intercept,
            n,
            d,
        }
    }

    /// Samples.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Outputs per sample: 1 (binary) or K.
    pub fn k(&self) -> usize {
        match &self.targets {
            Targets::Binary(_) => 1,
            Targets::Multiclass { k, .. } => *k,
        }
    }
    /// Rows of the model (features, +1 with an intercept).
    pub fn model_rows(&self) -> usize {
        self.d + usize::from(self.intercept)
    }
    /// Length of the model vector.
    pub fn dim(&self) -> usize {
        self.model_rows() * self.k()
    }
    /// The same data with its values stored in `precision` (f32: each value rounded to nearest
    /// once; f64 from f32: widened exactly). The layout (dense or CSR) is kept.
    pub fn with_precision(self, precision: Precision) -> Self {
        let store = match (precision, &self.store) {
            (Precision::F64, Store::F64(_)) | (Precision::F32, Store::F32(_)) => self.store,
            (Precision::F32, Store::F64(r)) => Store::F32(r.convert()),
            (Precision::F64, Store::F32(r)) => Store::F64(r.convert()),
        };
        Self { store, ..self }
    }
    /// The stored type of the design values.
    pub fn precision(&self) -> Precision {
        match self.store {
            Store::F64(_) => Precision::F64,
            Store::F32(_) => Precision::F32,
        }
    }
    /// True when the kernels stream dense rows.
    pub fn is_dense(&self) -> bool {
        self.dense_stride().is_some()
    }
    /// The padded row length of dense storage; `None` for CSR.
    fn dense_stride(&self) -> Option<usize> {
        with_rows!(&self.store, r => match r {
            Rows::Dense(r) => Some(r.stride),
            Rows::Sparse(_) => None,
        })
    }
    /// Design value (i, j) as stored (widened to f64; for tests and metrics, not a hot path).
    pub fn value_at(&self, i: usize, j: usize) -> f64 {
        assert!(i < self.n && j < self.d, "logistic: entry out of range");
        with_rows!(&self.store, r => match r {
            Rows::Dense(r) => r.row(i)[j].wide(),
            Rows::Sparse(m) => {
                let (idx, val) = m.row(i);
                idx.binary_search(&(j as u32)).map_or(0.0, |t| val[t].wide())
            }
        })
    }

    /// Bytes one pass reads per row: the padded dense row or the average CSR row (values,
    /// column indices and the row pointer), plus the target.
    fn row_bytes(&self) -> f64 {
        let target = match &self.targets {
            Targets::Binary(_) => std::mem::size_of::<f64>(),
            Targets::Multiclass { .. } => std::mem::size_of::<u32>(),
        };
        fn bytes<E: Elem>(r: &Rows<E>, n: usize) -> f64 {
            match r {
                Rows::Dense(r) => (r.stride * E::BYTES) as f64,
                Rows::Sparse(m) => {
                    let per_entry = E::BYTES + std::mem::size_of::<u32>();
                    (m.nnz() * per_entry) as f64 / n.max(1) as f64
                        + std::mem::size_of::<usize>() as f64
                }
            }
        }
        let row = with_rows!(&self.store, r => bytes(r, self.n));
        row + target as f64
    }

    /// Adds a pass over `rows` rows to [`streamed_bytes`].
    #[inline]
    fn count_streamed(&self, rows: usize) {
        let bytes = (rows as f64 * self.row_bytes()).round() as u64;
        STREAMED_BYTES.with(|c| c.set(c.get().wrapping_add(bytes)));
    }

    /// Σ_B w(i) ℓᵢ / |B|.
    pub(crate) fn value(&self, y: &[f64], batch: Batch<'_>, weight: Weights<'_>) -> f64 {
        self.pass(y, None, batch, weight, true, None, None, None)
    }

    /// out ← Σ_B w(i) ∇ℓᵢ / |B| (losses not computed).
    pub(crate) fn grad(&self, y: &[f64], batch: Batch<'_>, weight: Weights<'_>, out: &mut [f64]) {
        self.pass(y, None, batch, weight, false, Some(out), None, None);
    }

    /// out ← Σ_B w(i) ∇²ℓᵢ v / |B|.
    pub(crate) fn hvp(
        &self,
        y: &[f64],
        v: &[f64],
        batch: Batch<'_>,
        weight: Weights<'_>,
        out: &mut [f64],
    ) {
        self.pass(y, Some(v), batch, weight, false, None, Some(out), None);
    }

    /// One fused pass over `batch` at model `y` (and direction `v`): returns Σ_B w(i) ℓᵢ / |B|
    /// when `want_loss` (0 otherwise), writes Σ_B w(i) ∇ℓᵢ / |B| into `grad` and
    /// Σ_B w(i) ∇²ℓᵢ v / |B| into `hvp` when given (overwritten), and calls `on_sample` with
    /// every sample's (unweighted) loss and ∇ℓᵢ·v. `hvp` and the per-sample ∇ℓᵢ·v need `v`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn pass(
        &self,
        y: &[f64],
        v: Option<&[f64]>,
        batch: Batch<'_>,
        weight: Weights<'_>,
        want_loss: bool,
        grad: Option<&mut [f64]>,
        hvp: Option<&mut [f64]>,
        on_sample: Option<OnSample<'_>>,
    ) -> f64 {
        let dim = self.dim();
        assert_eq!(y.len(), dim, "logistic: model length");
        if let Some(v) = v {
            assert_eq!(v.len(), dim, "logistic: direction length");
        }
        assert!(
            hvp.is_none() || v.is_some(),
            "logistic: a Hessian product needs a direction"
        );
        let rows = match batch {
            Batch::Full => RowSet::Range(0, self.n),
            Batch::Indices(idx) => RowSet::Indices(idx),
        };
        let job = Job {
            w: y,
            v,
            weight,
            inv: 1.0 / rows.len().max(1) as f64,
            want_loss,
            held: None,
        };
        self.run_job(job, rows, grad, hvp, on_sample)
    }

    /// Runs one pass described by `job` over `rows` (see [`pass`](Self::pass)).
    fn run_job(
        &self,
        job: Job<'_>,
        rows: RowSet<'_>,
        grad: Option<&mut [f64]>,
        hvp: Option<&mut [f64]>,
        on_sample: Option<OnSample<'_>>,
    ) -> f64 {
        self.count_streamed(rows.len());
        let v = job.v;
        let copies =
            1 + usize::from(v.is_some()) + usize::from(grad.is_some()) + usize::from(hvp.is_some());
        // Room for the copies, each in its own 64-byte aligned slot.
        let native_len = self
            .native_len()
            .map_or(0, |len| copies * native_slot(len) + LANES);
        with_native_scratch(native_len, |native| {
            kernels::dispatch_lanes(PassOp {
                data: self,
                job,
                rows,
                grad,
                hvp,
                on_sample,
                native,
            })
        })
    }

    /// The length of the model in the native layout of the multiclass kernels (class-major
    /// padded rows for dense designs, feature rows padded to whole lane chunks for CSR with
    /// K ≤ 32); `None` where the pass works on the model as it is.
    fn native_len(&self) -> Option<usize> {
        match (self.dense_stride(), &self.targets) {
            (_, Targets::Binary(_)) => None,
            (Some(stride), Targets::Multiclass { k, .. }) => {
                Some(k * stride + if self.intercept { *k } else { 0 })
            }
            (None, Targets::Multiclass { k, .. }) => {
                let nv = k.div_ceil(LANES);
                (nv <= 4).then(|| self.model_rows() * nv * LANES)
            }
        }
    }

    /// [`pass`](Self::pass) with the instruction set `s` on the store's rows (stored type `E`).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn pass_rows<S: Simd8, E: Elem>(
        &self,
        s: S,
        store: &Rows<E>,
        job: &Job<'_>,
        rows: RowSet<'_>,
        grad: Option<&mut [f64]>,
        hvp: Option<&mut [f64]>,
        on_sample: Option<OnSample<'_>>,
        native: &mut [f64],
    ) -> f64 {
        match (store, &self.targets) {
            (Rows::Dense(r), Targets::Binary(labels)) => match r.stride / LANES {
                1 => self.binary_pass(
                    s,
                    &Fixed::<1, S, E>::new(r, s),
                    labels,
                    job,
                    rows,
                    grad,
                    hvp,
                    on_sample,
                ),
                2 => self.binary_pass(
                    s,
                    &Fixed::<2, S, E>::new(r, s),
                    labels,
                    job,
                    rows,
                    grad,
                    hvp,
                    on_sample,
                ),
                3 => self.binary_pass(
                    s,
                    &Fixed::<3, S, E>::new(r, s),
                    labels,
                    job,
                    rows,
                    grad,
                    hvp,
                    on_sample,
                ),
                4 => self.binary_pass(
                    s,
                    &Fixed::<4, S, E>::new(r, s),
                    labels,
                    job,
                    rows,
                    grad,
                    hvp,
                    on_sample,
                ),
                _ => self.binary_pass(s, r, labels, job, rows, grad, hvp, on_sample),
            },
            (Rows::Sparse(r), Targets::Binary(labels)) => {
                self.binary_pass(s, r, labels, job, rows, grad, hvp, on_sample)
            }
            (Rows::Dense(r), Targets::Multiclass { class, k }) => {
                self.multi_dense(s, r, class, *k, job, rows, grad, hvp, on_sample, native)
            }
            (Rows::Sparse(r), Targets::Multiclass { class, k }) => match k.div_ceil(LANES) {
                1 => self.multi_sparse::<1, S, E>(
                    s, r, class, *k, job, rows, grad, hvp, on_sample, native,
                ),
                2 => self.multi_sparse::<2, S, E>(
                    s, r, class, *k, job, rows, grad, hvp, on_sample, native,
                ),
                3 => self.multi_sparse::<3, S, E>(
                    s, r, class, *k, job, rows, grad, hvp, on_sample, native,
                ),
                4 => self.multi_sparse::<4, S, E>(
                    s, r, class, *k, job, rows, grad, hvp, on_sample, native,
                ),
                _ => {
                    let bias_at = self.d * k;
                    self.drive(
                        s,
                        rows,
                        self.dim(),
                        grad,
                        hvp,
                        on_sample,
                        #[inline(always)]
                        |set, g, h, o| self.multi_block(r, class, *k, bias_at, job, set, g, h, o),
                    )
                }
            },
        }
    }

    /// The multiclass pass on a CSR design with K ≤ 8·NV classes: the model is copied into a
    /// feature-major layout whose rows are padded to NV lane chunks ([`PaddedCsr`]), so that
    /// each non-zero is a fixed number of full-width multiply-adds, then the outputs are copied
    /// back.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn multi_sparse<const NV: usize, S: Simd8, E: Elem>(
        &self,
        s: S,
        r: &SparseRows<E>,
        class: &[u32],
        k: usize,
        job: &Job<'_>,
        rows: RowSet<'_>,
        grad: Option<&mut [f64]>,
        hvp: Option<&mut [f64]>,
        on_sample: Option<OnSample<'_>>,
        native: &mut [f64],
    ) -> f64 {
        let (kp, model_rows) = (NV * LANES, self.model_rows());
        let layout = NativeLayout {
            len: model_rows * kp,
            bias_at: self.d * kp,
            to_native: |w: &[f64], out: &mut [f64]| to_padded_rows(w, model_rows, k, kp, out),
            from_native: |n: &[f64], out: &mut [f64]| from_padded_rows(n, model_rows, k, kp, out),
        };
        let ops = PaddedCsr::<NV, E> { m: r };
        self.multi_native(
            s, &ops, class, k, &layout, job, rows, grad, hvp, on_sample, native,
        )
    }

    /// The multiclass pass in the native layout of `ops`: W (and V) are copied in, the blocks
    /// run ([`multi_block`](Self::multi_block), split over threads for full batches by
    /// [`drive`](Self::drive)), and ∇ and ∇²·v are copied back to the feature-major layout.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn multi_native<S: Simd8, R: MultiOps>(
        &self,
        s: S,
        ops: &R,
        class: &[u32],
        k: usize,
        layout: &NativeLayout<impl Fn(&[f64], &mut [f64]), impl Fn(&[f64], &mut [f64])>,
        job: &Job<'_>,
        rows: RowSet<'_>,
        grad: Option<&mut [f64]>,
        hvp: Option<&mut [f64]>,
        on_sample: Option<OnSample<'_>>,
        scratch: &mut [f64],
    ) -> f64 {
        let native = layout.len;
        // Each copy starts on a 64-byte boundary ([`native_slot`]): a padded row that straddled
        // one more cache line made every multiply-add of the CSR kernels a split access.
        let slot = native_slot(native);
        let n_in = 1 + usize::from(job.v.is_some());
        let n_out = usize::from(grad.is_some()) + usize::from(hvp.is_some());
        {
            let start = aligned_offset(scratch);
            let buf = &mut scratch[start..start + (n_in + n_out) * slot];
            let (inputs, outputs) = buf.split_at_mut(n_in * slot);
            let (w_n, v_n) = inputs.split_at_mut(slot);
            let v_len = native.min(v_n.len());
            let (w_n, v_n) = (&mut w_n[..native], &mut v_n[..v_len]);
            debug_assert!(
                [w_n.as_ptr(), v_n.as_ptr()]
                    .iter()
                    .all(|p| p.addr() % 64 == 0),
                "native model copies start on 64-byte lines"
            );
            (layout.to_native)(job.w, w_n);
            if let Some(v) = job.v {
                (layout.to_native)(v, v_n);
            }
            let native_job = Job {
                w: w_n,
                v: job.v.map(|_| &*v_n),
                weight: job.weight,
                inv: job.inv,
                want_loss: job.want_loss,
                held: job.held,
            };
            let (g_n, h_n) = outputs.split_at_mut(if grad.is_some() { slot } else { 0 });
            let g_len = native.min(g_n.len());
            let g_n = grad.is_some().then_some(&mut g_n[..g_len]);
            let h_n = if hvp.is_some() {
                Some(&mut h_n[..native])
            } else {
                None
            };
            let bias_at = layout.bias_at;
            let total = self.drive(
                s,
                rows,
                native,
                g_n,
                h_n,
                on_sample,
                #[inline(always)]
                |set, g, h, o| self.multi_block(ops, class, k, bias_at, &native_job, set, g, h, o),
            );
            let (g_n, h_n) = outputs.split_at(if grad.is_some() { slot } else { 0 });
            if let Some(g) = grad {
                (layout.from_native)(&g_n[..native], g);
            }
            if let Some(h) = hvp {
                (layout.from_native)(&h_n[..native], h);
            }
            total
        }
    }

    /// The number of parallel blocks of a pass over `rows` with outputs of length `len`. It
    /// depends on the shape only (never on the thread count), so results do not either.
    /// Minibatches run in one block: splitting a 64-row batch of the hyper-cleaning shape in
    /// two took longer with two threads than in one piece (276 → 395 µs per SOBA step), as
    /// each block zeroes and adds back a partial output of the whole model (2 × 12,560
    /// entries) for ~70 µs of work.
    fn blocks(&self, rows: RowSet<'_>, len: usize) -> usize {
        block_count(rows.len(), self.dim(), len)
    }

    /// Runs `block` over `rows` into the (zeroed) outputs: in one piece, or in parallel blocks
    /// whose partial sums are added in block order. Returns the summed scalar. With parallel
    /// blocks, each block records its per-sample values, and `on_sample` is called afterwards
    /// in row order, as in one piece.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn drive<S: Simd8>(
        &self,
        s: S,
        rows: RowSet<'_>,
        len: usize,
        mut grad: Option<&mut [f64]>,
        mut hvp: Option<&mut [f64]>,
        on_sample: Option<OnSample<'_>>,
        block: impl Fn(RowSet<'_>, Option<&mut [f64]>, Option<&mut [f64]>, Option<OnSample<'_>>) -> f64
        + Sync,
    ) -> f64 {
        for out in [grad.as_deref_mut(), hvp.as_deref_mut()]
            .into_iter()
            .flatten()
        {
            out.fill(0.0);
        }
        let layout = Layout {
            len,
            grad: grad.is_some(),
            hvp: hvp.is_some(),
        };
        let nb = self.blocks(rows, len);
        if nb == 1 {
            return block(rows, grad, hvp, on_sample);
        }
        let n = rows.len();
        let outputs = layout.partial();
        // Per block: the partial outputs and sum, then (i, ℓᵢ, ∇ℓᵢ·v, 1/|B|) per row.
        let records = if on_sample.is_some() {
            SAMPLE_RECORD * n.div_ceil(nb)
        } else {
            0
        };
        // Each block's partial on its own 64-byte lines (see `native_slot`).
        let plen = (outputs + records).next_multiple_of(LANES);
        with_scratch(nb * plen + LANES, |scratch| {
            let start = aligned_offset(scratch);
            let partials = &mut scratch[start..start + nb * plen];
            debug_assert_eq!(
                partials.as_ptr().addr() % 64,
                0,
                "partials on 64-byte lines"
            );
            partials
                .par_chunks_mut(plen)
                .enumerate()
                .for_each(|(b, part)| {
                    let range = block_range(b, nb, n);
                    let sub = match rows {
                        RowSet::Range(start, _) => {
                            RowSet::Range(start + range.start, start + range.end)
                        }
                        RowSet::Indices(idx) => RowSet::Indices(&idx[range]),
                    };
                    let (part, recs) = part.split_at_mut(outputs);
                    let (g, h) = layout.split(part);
                    let mut at = 0;
                    let mut record = |i: usize, loss: f64, dd: f64, inv: f64| {
                        recs[at..at + SAMPLE_RECORD].copy_from_slice(&[i as f64, loss, dd, inv]);
                        at += SAMPLE_RECORD;
                    };
                    let recorder: Option<OnSample<'_>> =
                        if records > 0 { Some(&mut record) } else { None };
                    part[outputs - 1] = s.run(
                        #[inline(always)]
                        || block(sub, g, h, recorder),
                    );
                });
            let mut total = 0.0;
            for part in partials.chunks_exact(plen) {
                let (g, h) = split_ref(&layout, part);
                if let (Some(out), Some(p)) = (grad.as_deref_mut(), g) {
                    kernels_add(out, p);
                }
                if let (Some(out), Some(p)) = (hvp.as_deref_mut(), h) {
                    kernels_add(out, p);
                }
                total += part[outputs - 1];
            }
            if let Some(f) = on_sample {
                for (b, part) in partials.chunks_exact(plen).enumerate() {
                    let rows_in_block = block_range(b, nb, n).len();
                    for r in part[outputs..]
                        .chunks_exact(SAMPLE_RECORD)
                        .take(rows_in_block)
                    {
                        f(r[0] as usize, r[1], r[2], r[3]);
                    }
                }
            }
            total
        })
    }

    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn binary_pass<S: Simd8, R: RowOps>(
        &self,
        s: S,
        r: &R,
        labels: &[f64],
        job: &Job<'_>,
        rows: RowSet<'_>,
        grad: Option<&mut [f64]>,
        hvp: Option<&mut [f64]>,
        on_sample: Option<OnSample<'_>>,
    ) -> f64 {
        self.drive(
            s,
            rows,
            job.w.len(),
            grad,
            hvp,
            on_sample,
            #[inline(always)]
            |set, g, h, o| self.binary_block(r, labels, job, set, g, h, o),
        )
    }

    /// The binary kernel on one block of rows (outputs accumulated).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn binary_block<R: RowOps>(
        &self,
        r: &R,
        labels: &[f64],
        job: &Job<'_>,
        rows: RowSet<'_>,
        grad: Option<&mut [f64]>,
        hvp: Option<&mut [f64]>,
        mut on_sample: Option<OnSample<'_>>,
    ) -> f64 {
        let d = self.d;
        let (w, w_bias) = split_bias(job.w, d, self.intercept);
        let yin = r.input(w);
        let (vin, v_bias) = match job.v {
            Some(v) => {
                let (vw, vb) = split_bias(v, d, self.intercept);
                (Some(r.input(vw)), vb)
            }
            None => (None, 0.0),
        };
        let (mut gout, mut gbias) = match grad {
            Some(g) => {
                let (gw, gb) = g.split_at_mut(d);
                (Some(r.output(gw)), gb.first_mut())
            }
            None => (None, None),
        };
        let (mut hout, mut hbias) = match hvp {
            Some(h) => {
                let (hw, hb) = h.split_at_mut(d);
                (Some(r.output(hw)), hb.first_mut())
            }
            None => (None, None),
        };
        let want_dd = on_sample.is_some() && vin.is_some();
        let mut idx = [0usize; CHUNK];
        let mut zy = [0.0; CHUNK];
        let mut zv = [0.0; CHUNK];
        let mut lab = [0.0; CHUNK];
        let mut wt = [0.0; CHUNK];
        let mut cg = [0.0; CHUNK];
        let mut ch = [0.0; CHUNK];
        let mut loss = [0.0; CHUNK];
        let mut tt = [0.0; CHUNK];
        let mut total = 0.0;
        let len = rows.len();
        // Each row is asked for PREFETCH_ROWS rows ahead of its margin: the memory system
        // fetches it while the margins of the rows before are computed (a minibatch's rows are
        // cold: their reads, not the arithmetic, were half the time of an ijcnn1 step).
        for p in 0..len.min(PREFETCH_ROWS) {
            r.prefetch(rows.at(p));
        }
        let mut pos = 0;
        while pos < len {
            let n = (len - pos).min(CHUNK);
            rows.fill(pos, &mut idx[..n]);
            let ahead = (pos + PREFETCH_ROWS)..len.min(pos + n + PREFETCH_ROWS);
            pos += n;
            // Margins: x·w (and x·v) from one read of each row.
            match &vin {
                Some(vin) => {
                    for k in 0..n {
                        if ahead.start + k < ahead.end {
                            r.prefetch(rows.at(ahead.start + k));
                        }
                        let (a, b) = r.dot2(idx[k], &yin, vin);
                        zy[k] = a + w_bias;
                        zv[k] = b + v_bias;
                    }
                }
                None => {
                    for k in 0..n {
                        if ahead.start + k < ahead.end {
                            r.prefetch(rows.at(ahead.start + k));
                        }
                        zy[k] = r.dot(idx[k], &yin) + w_bias;
                    }
                }
            }
            for k in 0..n {
                lab[k] = labels[idx[k]];
                wt[k] = job.weight.at(idx[k]) * job.inv;
            }
            // Nonlinearity on the whole chunk (vectorised): r = −b σ(−bz), σ(z)σ(−z).
            // t = e^{−|bz|} is kept for the losses.
            if hout.is_some() {
                for k in 0..n {
                    let (t, s, curv) = binary_pieces(lab[k] * zy[k]);
                    tt[k] = t;
                    cg[k] = -(wt[k] * lab[k]) * s;
                    ch[k] = wt[k] * curv * zv[k];
                }
            } else {
                for k in 0..n {
                    let (t, s, _) = binary_pieces(lab[k] * zy[k]);
                    tt[k] = t;
                    cg[k] = -(wt[k] * lab[k]) * s;
                }
            }
            // Losses (vectorised), summed in sample order.
            if job.want_loss {
                for k in 0..n {
                    loss[k] = softplus_neg(lab[k] * zy[k], tt[k]);
                }
                for k in 0..n {
                    total += wt[k] * loss[k];
                }
            }
            // Per-sample values (per-sample callbacks): scalar.
            if let Some(f) = on_sample.as_deref_mut() {
                for k in 0..n {
                    let l = if job.want_loss { loss[k] } else { 0.0 };
                    let dk = if want_dd {
                        let (_, s, _) = binary_pieces(lab[k] * zy[k]);
                        -lab[k] * s * zv[k]
                    } else {
                        0.0
                    };
                    f(idx[k], l, dk, job.inv);
                }
            }
            // Updates: ∇ and ∇²·v rows from a second (cached) read of each row. The
            // accumulators are moved into locals for the loop (so they stay in registers).
            match (gout.take(), hout.take()) {
                (Some(mut g), Some(mut h)) => {
                    for k in 0..n {
                        r.axpy2(idx[k], cg[k], ch[k], &mut g, &mut h);
                    }
                    gout = Some(g);
                    hout = Some(h);
                }
                (Some(mut g), None) => {
                    for k in 0..n {
                        r.axpy(idx[k], cg[k], &mut g);
                    }
                    gout = Some(g);
                }
                (None, Some(mut h)) => {
                    for k in 0..n {
                        r.axpy(idx[k], ch[k], &mut h);
                    }
                    hout = Some(h);
                }
                (None, None) => {}
            }
            if let Some(b) = gbias.as_deref_mut() {
                for &c in &cg[..n] {
                    *b += c;
                }
            }
            if let Some(b) = hbias.as_deref_mut() {
                for &c in &ch[..n] {
                    *b += c;
                }
            }
        }
        if let Some(g) = gout {
            r.finish(g);
        }
        if let Some(h) = hout {
            r.finish(h);
        }
        total
    }

    /// Multiclass over padded dense rows: converts W (and V) to class-major padded copies, runs
    /// the blocks, converts the outputs back to feature-major.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn multi_dense<S: Simd8, E: Elem>(
        &self,
        s: S,
        r: &PaddedRows<E>,
        class: &[u32],
        k: usize,
        job: &Job<'_>,
        rows: RowSet<'_>,
        grad: Option<&mut [f64]>,
        hvp: Option<&mut [f64]>,
        on_sample: Option<OnSample<'_>>,
        native: &mut [f64],
    ) -> f64 {
        let (d, stride, intercept) = (self.d, r.stride, self.intercept);
        // Native layout: k rows of `stride` (class-major, zero-padded), then the k biases.
        let layout = NativeLayout {
            len: k * stride + if intercept { k } else { 0 },
            bias_at: k * stride,
            to_native: |w: &[f64], out: &mut [f64]| to_class_major(w, d, k, stride, intercept, out),
            from_native: |n: &[f64], out: &mut [f64]| {
                from_class_major(n, d, k, stride, intercept, out)
            },
        };
        self.multi_native(
            s, r, class, k, &layout, job, rows, grad, hvp, on_sample, native,
        )
    }

    /// The multiclass kernel on one block of rows, in the native layout of `r` (biases at
    /// `bias_at`). Rows go in groups of [`GROUP`]: the outputs of a group (z = Wᵀx, and
    /// u = Vᵀx with a direction), then each row's softmax and coefficients, then the group's
    /// back-products, added in row order, so the values equal a row-by-row pass bit for bit.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn multi_block<R: MultiOps>(
        &self,
        r: &R,
        class: &[u32],
        k: usize,
        bias_at: usize,
        job: &Job<'_>,
        rows: RowSet<'_>,
        mut grad: Option<&mut [f64]>,
        mut hvp: Option<&mut [f64]>,
        mut on_sample: Option<OnSample<'_>>,
    ) -> f64 {
        // z, u, c_grad, c_hvp and p for GROUP rows.
        let size = 5 * GROUP * k;
        let mut stack = [0.0; 5 * GROUP * STACK_K];
        let mut heap = Vec::new();
        let buf: &mut [f64] = if k <= STACK_K {
            &mut stack[..size]
        } else {
            heap.resize(size, 0.0);
            &mut heap
        };
        let (z, rest) = buf.split_at_mut(GROUP * k);
        let (u, rest) = rest.split_at_mut(GROUP * k);
        let (c_grad, rest) = rest.split_at_mut(GROUP * k);
        let (c_hvp, p) = rest.split_at_mut(GROUP * k);
        let mut total = 0.0;
        let mut idx = [0usize; CHUNK];
        let len = rows.len();
        let mut pos = 0;
        while pos < len {
            let n = (len - pos).min(CHUNK);
            rows.fill(pos, &mut idx[..n]);
            pos += n;
            for group in idx[..n].chunks(GROUP) {
                let full: Option<&[usize; GROUP]> = group.try_into().ok();
                let m = group.len();
                if let (Some(held), Some(v), Some(out)) = (job.held, job.v, hvp.as_deref_mut()) {
                    // A Hessian product with the probabilities held: u = V x, then
                    // c = w (p⊙u − p (p·u)) as below, without W x and its softmax. (The group
                    // product and backward are spelled out here as below: sharing them in two
                    // helpers cost 2 % per step on the wide shapes, benchmarks/NOTES.md.)
                    match full {
                        Some(g) => r.outputs_group(g, v, u),
                        None => {
                            for (&i, ur) in group.iter().zip(u.chunks_exact_mut(k)) {
                                r.outputs(i, v, ur);
                            }
                        }
                    }
                    for (q, &i) in group.iter().enumerate() {
                        let uq = &mut u[q * k..(q + 1) * k];
                        if self.intercept {
                            for (uc, &b) in uq.iter_mut().zip(&v[bias_at..bias_at + k]) {
                                *uc += b;
                            }
                        }
                        let p = &held[i * k..(i + 1) * k];
                        let wi = job.weight.at(i) * job.inv;
                        let pu: f64 = p.iter().zip(uq.iter()).map(|(a, b)| a * b).sum();
                        let cq = &mut c_hvp[q * k..(q + 1) * k];
                        for ((cc, &pc), &uc) in cq.iter_mut().zip(p).zip(uq.iter()) {
                            *cc = wi * pc * (uc - pu);
                        }
                    }
                    match full {
                        Some(g) => r.back_group(g, c_hvp, out),
                        None => {
                            for (&i, cq) in group.iter().zip(c_hvp.chunks_exact(k)) {
                                r.back(i, cq, out);
                            }
                        }
                    }
                    if self.intercept {
                        for cq in c_hvp[..m * k].chunks_exact(k) {
                            for (o, &cc) in out[bias_at..bias_at + k].iter_mut().zip(cq) {
                                *o += cc;
                            }
                        }
                    }
                    continue;
                }
                match full {
                    Some(g) => r.outputs_group(g, job.w, z),
                    None => {
                        for (&i, zr) in group.iter().zip(z.chunks_exact_mut(k)) {
                            r.outputs(i, job.w, zr);
                        }
                    }
                }
                if let Some(v) = job.v {
                    match full {
                        Some(g) => r.outputs_group(g, v, u),
                        None => {
                            for (&i, ur) in group.iter().zip(u.chunks_exact_mut(k)) {
                                r.outputs(i, v, ur);
                            }
                        }
                    }
                }
                // p = softmax z: the shifted outputs of the whole group first, then one
                // exponential loop over all of them (it vectorises; per row, K = 7 or 10 is too
                // short), then each row's sum in class order (the same values as row by row).
                let mut maxes = [0.0; GROUP];
                for (q, max) in maxes[..m].iter_mut().enumerate() {
                    let zq = &mut z[q * k..(q + 1) * k];
                    if self.intercept {
                        for (zc, &b) in zq.iter_mut().zip(&job.w[bias_at..bias_at + k]) {
                            *zc += b;
                        }
                    }
                    *max = zq.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
                    for (pc, &zz) in p[q * k..(q + 1) * k].iter_mut().zip(zq.iter()) {
                        *pc = zz - *max;
                    }
                }
                for pc in p[..m * k].iter_mut() {
                    *pc = kernels::exp(*pc);
                }
                for (q, &i) in group.iter().enumerate() {
                    let zq = &mut z[q * k..(q + 1) * k];
                    let uq = &mut u[q * k..(q + 1) * k];
                    let p = &mut p[q * k..(q + 1) * k];
                    let wi = job.weight.at(i) * job.inv;
                    let cls = class[i] as usize;
                    let zc = zq[cls];
                    let max = maxes[q];
                    let sum: f64 = p.iter().fold(0.0, |a, &b| a + b);
                    let inv_sum = 1.0 / sum;
                    for pc in p.iter_mut() {
                        *pc *= inv_sum;
                    }
                    let loss = if job.want_loss {
                        let l = max + sum.ln() - zc;
                        total += wi * l;
                        l
                    } else {
                        0.0
                    };
                    // Residual r = p − e_b into z.
                    zq.copy_from_slice(p);
                    zq[cls] -= 1.0;
                    let mut dd = 0.0;
                    if let Some(v) = job.v {
                        if self.intercept {
                            for (uc, &b) in uq.iter_mut().zip(&v[bias_at..bias_at + k]) {
                                *uc += b;
                            }
                        }
                        dd = zq.iter().zip(uq.iter()).map(|(a, b)| a * b).sum();
                        if hvp.is_some() {
                            // c = w (p⊙u − p (p·u)).
                            let pu: f64 = p.iter().zip(uq.iter()).map(|(a, b)| a * b).sum();
                            let cq = &mut c_hvp[q * k..(q + 1) * k];
                            for ((cc, &pc), &uc) in cq.iter_mut().zip(p.iter()).zip(uq.iter()) {
                                *cc = wi * pc * (uc - pu);
                            }
                        }
                    }
                    if let Some(f) = on_sample.as_deref_mut() {
                        f(i, loss, dd, job.inv);
                    }
                    if grad.is_some() {
                        let cq = &mut c_grad[q * k..(q + 1) * k];
                        for (cc, &zc) in cq.iter_mut().zip(zq.iter()) {
                            *cc = wi * zc;
                        }
                    }
                }
                // ∇²·v needs a direction; without one the hvp output stays zero.
                let hvp_out = if job.v.is_some() {
                    hvp.as_deref_mut()
                } else {
                    None
                };
                for (out, coef) in [(hvp_out, &*c_hvp), (grad.as_deref_mut(), &*c_grad)] {
                    let Some(out) = out else { continue };
                    match full {
                        Some(g) => r.back_group(g, coef, out),
                        None => {
                            for (&i, cq) in group.iter().zip(coef.chunks_exact(k)) {
                                r.back(i, cq, out);
                            }
                        }
                    }
                    if self.intercept {
                        for cq in coef[..m * k].chunks_exact(k) {
                            for (o, &cc) in out[bias_at..bias_at + k].iter_mut().zip(cq) {
                                *o += cc;
                            }
                        }
                    }
                }
            }
        }
        total
    }

    /// (mean loss, accuracy) of the model `y` on every sample (unweighted).
    pub fn evaluate(&self, y: &[f64]) -> (f64, f64) {
        let k = self.k();
        let dim = self.dim();
        assert_eq!(y.len(), dim, "logistic: model length");
        let mut z = vec![0.0; k];
        let mut correct = 0usize;
        for i in 0..self.n {
            self.outputs_slow(y, i, &mut z);
            let right = match &self.targets {
                Targets::Binary(b) => z[0] * b[i] > 0.0,
                Targets::Multiclass { class, .. } => {
                    let best = z
                        .iter()
                        .enumerate()
                        .fold(
                            (0, f64::NEG_INFINITY),
                            |a, (c, &v)| {
                                if v > a.1 { (c, v) } else { a }
                            },
                        )
                        .0;
                    best == class[i] as usize
                }
            };
            correct += usize::from(right);
        }
        let loss = self.value(y, Batch::Full, Weights::Uniform);
        let n = self.n.max(1) as f64;
        (loss, correct as f64 / n)
    }

    /// The class probabilities of every sample at the model `y`, held for repeated Hessian
    /// products at that model ([`hvp_held`](Self::hvp_held)): each product then skips W x and
    /// its softmax, about half its work. `None` for binary targets (their pass computes w·x
    /// together with v·x from one read of the row, so there is little to save) and when the
    /// n × K table would exceed [`HOLD_MAX_ENTRIES`]. Rows run in fixed parallel blocks (the
    /// same values with any thread count).
    pub(crate) fn hold(&self, y: &[f64]) -> Option<Held> {
        let Targets::Multiclass { k, .. } = self.targets else {
            return None;
        };
        assert_eq!(y.len(), self.dim(), "logistic: model length");
        if self.n.saturating_mul(k) > HOLD_MAX_ENTRIES {
            return None;
        }
        self.count_streamed(self.n);
        let mut p = vec![0.0; self.n * k];
        p.par_chunks_mut(BLOCK_ROWS * k)
            .enumerate()
            .for_each(|(b, chunk)| {
                // In the widest instruction set: the shifted outputs of every row of the
                // block, one exponential loop over all of them (it vectorises), then each
                // row's sum in class order.
                kernels::dispatch(
                    #[inline(always)]
                    || {
                        for (r, pr) in chunk.chunks_exact_mut(k).enumerate() {
                            self.outputs_slow(y, b * BLOCK_ROWS + r, pr);
                            let top = pr.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                            for pc in pr.iter_mut() {
                                *pc -= top;
                            }
                        }
                        for pc in chunk.iter_mut() {
                            *pc = kernels::exp(*pc);
                        }
                        for pr in chunk.chunks_exact_mut(k) {
                            let sum: f64 = pr.iter().fold(0.0, |a, &b| a + b);
                            let inv_sum = 1.0 / sum;
                            for pc in pr.iter_mut() {
                                *pc *= inv_sum;
                            }
                        }
                    },
                )
            });
        Some(Held { k, p })
    }

    /// out ← Σ w(i) ∇²ℓᵢ v / n over every sample, at the model whose probabilities `held`
    /// holds: [`hvp`](Self::hvp) on the full batch, up to rounding (the probabilities are
    /// computed by another summation order).
    pub(crate) fn hvp_held(&self, held: &Held, v: &[f64], weight: Weights<'_>, out: &mut [f64]) {
        assert_eq!(v.len(), self.dim(), "logistic: direction length");
        assert_eq!(
            held.p.len(),
            self.n * held.k,
            "logistic: held probabilities"
        );
        let job = Job {
            w: v, // not read: the probabilities replace W x
            v: Some(v),
            weight,
            inv: 1.0 / self.n.max(1) as f64,
            want_loss: false,
            held: Some(&held.p),
        };
        self.run_job(job, RowSet::Range(0, self.n), None, Some(out), None);
    }

    /// Calls `f(j, xᵢⱼ)` for the stored entries of row i in column order (every column of a
    /// dense row, the non-zeros of a CSR row), widened to f64.
    #[inline(always)]
    fn for_each_entry(&self, i: usize, mut f: impl FnMut(usize, f64)) {
        with_rows!(&self.store, r => match r {
            Rows::Dense(r) => {
                for (j, &a) in r.row(i)[..self.d].iter().enumerate() {
                    f(j, a.wide());
                }
            }
            Rows::Sparse(m) => {
                let (idx, val) = m.row(i);
                for (&j, &a) in idx.iter().zip(val) {
                    f(j as usize, a.wide());
                }
            }
        });
    }

    /// Model outputs of sample i, row by row (metrics, the held probabilities, the diagonal).
    #[inline(always)]
    fn outputs_slow(&self, y: &[f64], i: usize, z: &mut [f64]) {
        let (d, k) = (self.d, z.len());
        z.fill(0.0);
        self.for_each_entry(
            i,
            #[inline(always)]
            |j, a| {
                for (zc, &wc) in z.iter_mut().zip(&y[j * k..(j + 1) * k]) {
                    *zc += a * wc;
                }
            },
        );
        if self.intercept {
            for c in 0..k {
                z[c] += y[d * k + c];
            }
        }
    }

    /// Full batch: writes the diagonal of Σ w(i) ∇²ℓᵢ / n into `out` (model layout): per
    /// sample, xᵢⱼ² σ(zᵢ)σ(−zᵢ) (binary) or xᵢⱼ² pᵢc(1 − pᵢc) (multiclass), and the same with
    /// xᵢⱼ = 1 for an intercept. For preconditioning exact solves: rows run in fixed parallel
    /// blocks whose sums are added in block order (the same bits with any thread count).
    pub(crate) fn hess_diag(&self, y: &[f64], weight: Weights<'_>, out: &mut [f64]) {
        let (dim, n, k, d) = (self.dim(), self.n, self.k(), self.d);
        assert_eq!(y.len(), dim, "logistic: model length");
        assert_eq!(out.len(), dim, "logistic: diagonal length");
        self.count_streamed(n);
        let inv = 1.0 / n.max(1) as f64;
        let nb = block_count(n, dim, dim);
        let mut partials = vec![0.0; nb * dim];
        partials
            .par_chunks_mut(dim)
            .enumerate()
            .for_each(|(b, part)| {
                let mut z = vec![0.0; k];
                let mut curv = vec![0.0; k];
                for i in block_range(b, nb, n) {
                    self.outputs_slow(y, i, &mut z);
                    let wi = weight.at(i) * inv;
                    match &self.targets {
                        Targets::Binary(_) => {
                            let (_, _, c) = binary_pieces(z[0]);
                            curv[0] = wi * c;
                        }
                        Targets::Multiclass { .. } => {
                            let top = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                            let mut sum = 0.0;
                            for (c, &zc) in curv.iter_mut().zip(&z) {
                                *c = kernels::exp(zc - top);
                                sum += *c;
                            }
                            for c in curv.iter_mut() {
                                let p = *c / sum;
                                *c = wi * p * (1.0 - p);
                            }
                        }
                    }
                    let mut add = |j: usize, a: f64| {
                        for (o, &c) in part[j * k..(j + 1) * k].iter_mut().zip(&curv) {
                            *o += a * a * c;
                        }
                    };
                    self.for_each_entry(i, &mut add);
                    if self.intercept {
                        add(d, 1.0);
                    }
                }
            });
        out.fill(0.0);
        for part in partials.chunks_exact(dim) {
            kernels_add(out, part);
        }
    }

    /// Binary targets, full batch: returns Σ w(i) ℓᵢ / n, writes Σ w(i) ∇ℓᵢ / n into `grad` and
    /// the dense Hessian Σ w(i) ∇²ℓᵢ / n (row-major, dim × dim) into `hess`, in one parallel pass.
    /// `None` for multiclass targets (their dense Hessian is d²K² per sample; use products).
    pub(crate) fn value_grad_hess(
        &self,
        y: &[f64],
        weight: Weights<'_>,
        grad: &mut [f64],
        hess: &mut [f64],
    ) -> Option<f64> {
        let Targets::Binary(labels) = &self.targets else {
            return None;
        };
        let dim = self.dim();
        assert_eq!(y.len(), dim, "logistic: model length");
        assert_eq!(grad.len(), dim, "logistic: gradient length");
        assert_eq!(hess.len(), dim * dim, "logistic: Hessian size");
        self.count_streamed(self.n);
        // Dense rows of one to four lane chunks without an intercept: the fixed-width kernel.
        let fixed_width = with_rows!(&self.store, r => match r {
            Rows::Dense(rows) if !self.intercept && (1..=4).contains(&(rows.stride / LANES)) => {
                Some(kernels::dispatch_lanes(HessOp {
                    data: self,
                    rows,
                    labels,
                    y,
                    weight,
                    grad: &mut *grad,
                    hess: &mut *hess,
                }))
            }
            _ => None,
        });
        if fixed_width.is_some() {
            return fixed_width;
        }
        let n = self.n;
        let inv = 1.0 / n.max(1) as f64;
        // Partial: gradient (dim), Hessian in padded rows (dim × pd), loss.
        let pd = padded_len(dim);
        let plen = dim + dim * pd + 1;
        let nb = block_count(n, dim * dim, plen);
        let total = kernels::dispatch(
            #[inline(always)]
            || {
                with_scratch(nb * plen + pd, |buf| {
                    let (partials, _) = buf.split_at_mut(nb * plen);
                    partials
                        .par_chunks_mut(plen)
                        .enumerate()
                        .for_each(|(b, part)| {
                            let range = block_range(b, nb, n);
                            let (g, rest) = part.split_at_mut(dim);
                            let (h, l) = rest.split_at_mut(dim * pd);
                            l[0] = kernels::dispatch(
                                #[inline(always)]
                                || self.hess_block(labels, y, weight, inv, range, g, h, pd),
                            );
                        });
                    grad.fill(0.0);
                    hess.fill(0.0);
                    let mut total = 0.0;
                    for part in partials.chunks_exact(plen) {
                        let (g, rest) = part.split_at(dim);
                        let (h, l) = rest.split_at(dim * pd);
                        kernels_add(grad, g);
                        for a in 0..dim {
                            // Lower triangle (row a, columns 0..=a).
                            let (out, src) = (&mut hess[a * dim..a * dim + a + 1], &h[a * pd..]);
                            kernels_add(out, &src[..a + 1]);
                        }
                        total += l[0];
                    }
                    total
                })
            },
        );
        mirror_lower(hess, dim);
        Some(total)
    }

    /// One block of [`value_grad_hess`](Self::value_grad_hess): the lower triangle of the
    /// Hessian (row a in `h[a·pd ..]`, columns 0..=a) accumulated as Σ c xxᵀ.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn hess_block(
        &self,
        labels: &[f64],
        y: &[f64],
        weight: Weights<'_>,
        inv: f64,
        range: Range<usize>,
        grad: &mut [f64],
        h: &mut [f64],
        pd: usize,
    ) -> f64 {
        let (d, dim) = (self.d, y.len());
        let mut x = vec![0.0; pd];
        let mut yp = vec![0.0; pd];
        yp[..dim].copy_from_slice(y);
        let mut total = 0.0;
        for i in range {
            x.fill(0.0);
            with_rows!(&self.store, r => match r {
                Rows::Dense(r) => {
                    for (xj, &a) in x[..d].iter_mut().zip(r.row(i)) {
                        *xj = a.wide();
                    }
                }
                Rows::Sparse(m) => {
                    let (idx, val) = m.row(i);
                    for (&j, &a) in idx.iter().zip(val) {
                        x[j as usize] = a.wide();
                    }
                }
            });
            if self.intercept {
                x[d] = 1.0;
            }
            let z = dot_full(&x, &yp);
            let b = labels[i];
            let m = b * z;
            let (t, s, curv) = binary_pieces(m);
            let wi = weight.at(i) * inv;
            total += wi * softplus_neg(m, t);
            let res = -b * s;
            for (o, &xa) in grad.iter_mut().zip(&x[..dim]) {
                *o += wi * res * xa;
            }
            let c = wi * curv;
            for a in 0..dim {
                let ca = c * x[a];
                if ca != 0.0 {
                    let cols = padded_len(a + 1);
                    axpy_full(ca, &x[..cols], &mut h[a * pd..a * pd + cols]);
                }
            }
        }
        total
    }
}

/// [`LogisticData::value_grad_hess`] over padded dense rows without an intercept, waiting for its
/// instruction set.
struct HessOp<'a, E> {
    data: &'a LogisticData,
    rows: &'a PaddedRows<E>,
    labels: &'a [f64],
    y: &'a [f64],
    weight: Weights<'a>,
    grad: &'a mut [f64],
    hess: &'a mut [f64],
}

impl<E: Elem> WithLanes for HessOp<'_, E> {
    type Output = f64;
    fn wide(&self) -> bool {
        true
    }
    #[inline(always)]
    fn run<S: Simd8>(self, s: S) -> f64 {
        match self.rows.stride / LANES {
            1 => self.blocks::<1, S>(s),
            2 => self.blocks::<2, S>(s),
            3 => self.blocks::<3, S>(s),
            _ => self.blocks::<4, S>(s),
        }
    }
}

impl<E: Elem> HessOp<'_, E> {
    /// The parallel blocks and their reduction in block order. A block's partial holds the
    /// gradient (d), the Hessian rows 0..=d (one spare row for odd d) of `stride` columns each
    /// (lower triangle valid), and the loss.
    #[inline(always)]
    fn blocks<const NCH: usize, S: Simd8>(self, s: S) -> f64 {
        let (d, n, stride) = (self.data.d, self.data.n, self.rows.stride);
        let inv = 1.0 / n.max(1) as f64;
        let plen = d + (d + 1) * stride + 1;
        let nb = block_count(n, d * d, plen);
        let (grad, hess) = (self.grad, self.hess);
        let (rows, labels, y, weight) = (self.rows, self.labels, self.y, self.weight);
        with_scratch(nb * plen, |partials| {
            // A macro, expanded inside `s.run`, not a closure: a closure does not inherit the
            // target features, so a kernel compiled as a closure of its own calls every SIMD
            // intrinsic out of line (that made exact evaluations 8× slower once).
            macro_rules! kernel {
                ($b:expr, $part:expr) => {{
                    let (g, rest) = $part.split_at_mut(d);
                    let (h, l) = rest.split_at_mut((d + 1) * stride);
                    l[0] = hess_dense_block::<NCH, S, E>(
                        s,
                        rows,
                        labels,
                        y,
                        weight,
                        inv,
                        block_range($b, nb, n),
                        g,
                        h,
                    );
                }};
            }
            if nb == 1 {
                s.run(
                    #[inline(always)]
                    || kernel!(0, partials),
                );
            } else {
                partials
                    .par_chunks_mut(plen)
                    .enumerate()
                    .for_each(|(b, part)| {
                        s.run(
                            #[inline(always)]
                            || kernel!(b, part),
                        )
                    });
            }
            grad.fill(0.0);
            hess.fill(0.0);
            let mut total = 0.0;
            for part in partials.chunks_exact(plen) {
                let (g, rest) = part.split_at(d);
                let (h, l) = rest.split_at((d + 1) * stride);
                kernels_add(grad, g);
                for a in 0..d {
                    kernels_add(
                        &mut hess[a * d..a * d + a + 1],
                        &h[a * stride..a * stride + a + 1],
                    );
                }
                total += l[0];
            }
            mirror_lower(hess, d);
            total
        })
    }
}

/// One block of the dense Hessian kernel: rows in chunks of [`CHUNK`]; per chunk the margins,
/// the σ pieces (vectorised), the loss (summed in row order), the gradient, and the rank-CHUNK
/// update of the lower triangle of Σ c xxᵀ, two Hessian rows at a time with their accumulators
/// in registers over the whole chunk. Every output entry sums its rows in row order (lanes are
/// columns), so the values do not depend on the instruction set.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn hess_dense_block<const NCH: usize, S: Simd8, E: Elem>(
    s: S,
    rows: &PaddedRows<E>,
    labels: &[f64],
    y: &[f64],
    weight: Weights<'_>,
    inv: f64,
    range: Range<usize>,
    grad: &mut [f64],
    h: &mut [f64],
) -> f64 {
    let r = Fixed::<NCH, S, E>::new(rows, s);
    let d = y.len();
    let stride = rows.stride;
    h.fill(0.0);
    let yin = r.input(y);
    let mut gout = r.output(grad);
    for o in gout.acc.iter_mut() {
        *o = s.splat(0.0);
    }
    let (mut zy, mut cg, mut cc, mut tt, mut loss, mut wt) = (
        [0.0; CHUNK],
        [0.0; CHUNK],
        [0.0; CHUNK],
        [0.0; CHUNK],
        [0.0; CHUNK],
        [0.0; CHUNK],
    );
    let mut total = 0.0;
    let mut start = range.start;
    while start < range.end {
        let n = (range.end - start).min(CHUNK);
        for k in 0..n {
            zy[k] = r.dot(start + k, &yin);
            wt[k] = weight.at(start + k) * inv;
        }
        let lab = &labels[start..start + n];
        for k in 0..n {
            let m = lab[k] * zy[k];
            let (t, sg, curv) = binary_pieces(m);
            tt[k] = t;
            cg[k] = -(wt[k] * lab[k]) * sg;
            cc[k] = wt[k] * curv;
        }
        for k in 0..n {
            loss[k] = softplus_neg(lab[k] * zy[k], tt[k]);
        }
        for k in 0..n {
            total += wt[k] * loss[k];
        }
        for k in 0..n {
            r.axpy(start + k, cg[k], &mut gout);
        }
        // Hessian rows (a, a + 1) need the column chunks up to a + 1.
        let mut a = 0;
        while a < d {
            match ((a + 1) / LANES + 1).min(NCH) {
                1 => hess_pair::<1, NCH, S, E>(&r, start, n, &cc, a, stride, h),
                2 => hess_pair::<2, NCH, S, E>(&r, start, n, &cc, a, stride, h),
                3 => hess_pair::<3, NCH, S, E>(&r, start, n, &cc, a, stride, h),
                _ => hess_pair::<4, NCH, S, E>(&r, start, n, &cc, a, stride, h),
            }
            a += 2;
        }
        start += n;
    }
    r.finish(gout);
    total
}

/// Hessian rows a and a + 1, column chunks 0..M, += Σ_k cc[k] x_k,a x_k (rows start..start+n).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn hess_pair<const M: usize, const NCH: usize, S: Simd8, E: Elem>(
    r: &Fixed<'_, NCH, S, E>,
    start: usize,
    n: usize,
    cc: &[f64; CHUNK],
    a: usize,
    stride: usize,
    h: &mut [f64],
) {
    let s = r.s;
    let load = |row: &[f64], ch: usize| -> S::V {
        s.load(
            row[ch * LANES..(ch + 1) * LANES]
                .try_into()
                .expect("invariant: a whole lane chunk"),
        )
    };
    let mut acc_a: [S::V; M] = std::array::from_fn(|ch| load(&h[a * stride..], ch));
    let mut acc_b: [S::V; M] = std::array::from_fn(|ch| load(&h[(a + 1) * stride..], ch));
    for k in 0..n {
        let x = r.row(start + k);
        let (xa, xb) = (x[a / LANES][a % LANES].wide(), row_entry(x, a + 1));
        let (sa, sb) = (s.splat(cc[k] * xa), s.splat(cc[k] * xb));
        for ch in 0..M {
            let xv = r.chunk(x, ch);
            acc_a[ch] = s.add(acc_a[ch], s.mul(sa, xv));
            acc_b[ch] = s.add(acc_b[ch], s.mul(sb, xv));
        }
    }
    for ch in 0..M {
        let (va, vb) = (s.store(acc_a[ch]), s.store(acc_b[ch]));
        h[a * stride + ch * LANES..a * stride + (ch + 1) * LANES].copy_from_slice(&va);
        h[(a + 1) * stride + ch * LANES..(a + 1) * stride + (ch + 1) * LANES].copy_from_slice(&vb);
    }
}

/// Entry j of a padded row (0 past the padding: the spare Hessian row of an odd width).
#[inline(always)]
fn row_entry<const NCH: usize, E: Elem>(x: &[[E; LANES]; NCH], j: usize) -> f64 {
    if j < NCH * LANES {
        x[j / LANES][j % LANES].wide()
    } else {
        0.0
    }
}

/// out ← out + p.
#[inline(always)]
fn kernels_add(out: &mut [f64], p: &[f64]) {
    for (o, &a) in out.iter_mut().zip(p) {
        *o += a;
    }
}

/// The parts of a partial buffer, read-only.
fn split_ref<'a>(layout: &Layout, part: &'a [f64]) -> (Option<&'a [f64]>, Option<&'a [f64]>) {
    let (g, rest) = part.split_at(if layout.grad { layout.len } else { 0 });
    let (h, _) = rest.split_at(if layout.hvp { layout.len } else { 0 });
    (layout.grad.then_some(g), layout.hvp.then_some(h))
}

/// Parallel blocks of a full pass over `n` rows costing `work_per_row` multiply-adds each, with
/// per-block partial sums of `partial_len` entries: one block for small work, else about
/// [`BLOCK_ROWS`] rows per block, at most [`MAX_BLOCKS`], and within [`PARTIAL_BUDGET`].
fn block_count(n: usize, work_per_row: usize, partial_len: usize) -> usize {
    if n.saturating_mul(work_per_row) < PAR_MIN_WORK {
        1
    } else {
        (n / BLOCK_ROWS)
            .clamp(1, MAX_BLOCKS)
            .min((PARTIAL_BUDGET / partial_len.max(1)).max(1))
    }
}

/// Copies the lower triangle of the row-major `d × d` matrix onto its upper triangle.
fn mirror_lower(m: &mut [f64], d: usize) {
    for a in 0..d {
        for b in a + 1..d {
            m[a * d + b] = m[b * d + a];
        }
    }
}

/// Rows of block b of nb over 0..n (sizes differ by at most one).
fn block_range(b: usize, nb: usize, n: usize) -> Range<usize> {
    (b * n / nb)..((b + 1) * n / nb)
}

/// (weights, bias) of a binary model.
#[inline(always)]
fn split_bias(w: &[f64], d: usize, intercept: bool) -> (&[f64], f64) {
    if intercept {
        (&w[..d], w[d])
    } else {
        (&w[..d], 0.0)
    }
}

/// Feature-major W (d × k, then the bias row) → class-major padded rows, then the biases.
fn to_class_major(w: &[f64], d: usize, k: usize, stride: usize, intercept: bool, out: &mut [f64]) {
    for c in 0..k {
        let row = &mut out[c * stride..(c + 1) * stride];
        for j in 0..d {
            row[j] = w[j * k + c];
        }
        row[d..].fill(0.0);
    }
    if intercept {
        out[k * stride..k * stride + k].copy_from_slice(&w[d * k..(d + 1) * k]);
    }
}

/// The inverse of [`to_class_major`].
fn from_class_major(
    cm: &[f64],
    d: usize,
    k: usize,
    stride: usize,
    intercept: bool,
    out: &mut [f64],
) {
    for c in 0..k {
        let row = &cm[c * stride..c * stride + d];
        for j in 0..d {
            out[j * k + c] = row[j];
        }
    }
    if intercept {
        out[d * k..(d + 1) * k].copy_from_slice(&cm[k * stride..k * stride + k]);
    }
}

/// An outer objective that is a plain logistic loss on held-out data, independent of x (the
/// validation loss of `logreg_hpo` and `data_cleaning`): ∇ₓ and the cross products are zero.
pub struct ValidationLoss {
    data: LogisticData,
    dim_x: usize,
    /// Names the objective in batch errors.
    what: &'static str,
}

impl ValidationLoss {
    /// The loss on `data`, in a problem whose x has `dim_x` entries; `what` names it in errors.
    pub fn new(data: LogisticData, dim_x: usize, what: &'static str) -> Self {
        Self { data, dim_x, what }
    }
    /// The held-out data.
    pub fn data(&self) -> &LogisticData {
        &self.data
    }
}

impl Objective for ValidationLoss {
    fn dims(&self) -> (usize, usize) {
        (self.dim_x, self.data.dim())
    }
    fn n_samples(&self) -> usize {
        self.data.n()
    }
    fn value(&self, _x: &Vector, y: &Vector, batch: Batch<'_>) -> f64 {
        check_batch(batch, self.data.n(), self.what);
        self.data.value(y.as_slice(), batch, Weights::Uniform)
    }
    fn grad_x(&self, _x: &Vector, _y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        check_batch(batch, self.data.n(), self.what);
        out.set_zero();
    }
    fn grad_y(&self, _x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        check_batch(batch, self.data.n(), self.what);
        self.data
            .grad(y.as_slice(), batch, Weights::Uniform, out.as_mut_slice());
    }
    fn grad_xy(
        &self,
        x: &Vector,
        y: &Vector,
        batch: Batch<'_>,
        out_x: &mut Vector,
        out_y: &mut Vector,
    ) {
        out_x.set_zero();
        self.grad_y(x, y, batch, out_y);
    }
    fn fused(&self, _x: &Vector, y: &Vector, v: Option<&Vector>, batch: Batch<'_>, out: Fused<'_>) {
        check_batch(batch, self.data.n(), self.what);
        let Fused {
            value,
            grad_x,
            grad_y,
            hvp_yy,
            cross_xy,
        } = out;
        for o in [grad_x, cross_xy].into_iter().flatten() {
            o.set_zero();
        }
        if value.is_some() || grad_y.is_some() || hvp_yy.is_some() {
            let vs = if hvp_yy.is_some() {
                Some(
                    v.unwrap_or_else(|| panic!("{}: a product along v needs v", self.what))
                        .as_slice(),
                )
            } else {
                None
            };
            // One pass for the loss and the derivatives.
            let loss = self.data.pass(
                y.as_slice(),
                vs,
                batch,
                Weights::Uniform,
                value.is_some(),
                grad_y.map(|o| o.as_mut_slice()),
                hvp_yy.map(|o| o.as_mut_slice()),
                None,
            );
            if let Some(value) = value {
                *value = loss;
            }
        }
    }
    fn hvp_yy(&self, _x: &Vector, y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        check_batch(batch, self.data.n(), self.what);
        self.data.hvp(
            y.as_slice(),
            v.as_slice(),
            batch,
            Weights::Uniform,
            out.as_mut_slice(),
        );
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
    use crate::data::DenseMatrix;

    /// Uniform draws in [0, 1) from a fixed LCG seeded with `state` (the test values only need
    /// to be generic).
    fn uniform_draws(mut state: u64) -> impl FnMut() -> f64 {
        move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// The row-major `n × d` matrix `x` as CSR (its non-zeros).
    fn csr_of(x: &[f64], n: usize, d: usize) -> CsrMatrix {
        let (mut indptr, mut indices, mut values) = (vec![0], Vec::new(), Vec::new());
        for row in x.chunks_exact(d).take(n) {
            for (j, &a) in row.iter().enumerate() {
                if a != 0.0 {
                    indices.push(j as u32);
                    values.push(a);
                }
            }
            indptr.push(indices.len());
        }
        CsrMatrix::new(n, d, indptr, indices, values).unwrap()
    }

    /// (mean loss, ∇, ∇²·v, per-sample (ℓᵢ, ∇ℓᵢ·v)).
    type NaiveMulti = (f64, Vec<f64>, Vec<f64>, Vec<(f64, f64)>);

    /// The naive multinomial reference: per sample, z = Wᵀx + b, p = softmax z, loss, ∇ and
    /// ∇²·v in the feature-major model layout, with plain loops (no lanes, no grouping).
    fn naive_multi(
        x: &[f64],
        d: usize,
        class: &[u32],
        k: usize,
        intercept: bool,
        y: &[f64],
        v: &[f64],
        rows: &[usize],
        weight: impl Fn(usize) -> f64,
    ) -> NaiveMulti {
        let dim = y.len();
        let (mut loss, mut g, mut h, mut per) = (0.0, vec![0.0; dim], vec![0.0; dim], Vec::new());
        let inv = 1.0 / rows.len() as f64;
        let out = |w: &[f64], i: usize| -> Vec<f64> {
            (0..k)
                .map(|c| {
                    let mut z: f64 = (0..d).map(|j| x[i * d + j] * w[j * k + c]).sum();
                    if intercept {
                        z += w[d * k + c];
                    }
                    z
                })
                .collect()
        };
        for &i in rows {
            let wi = weight(i) * inv;
            let z = out(y, i);
            let u = out(v, i);
            let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = z.iter().map(|a| (a - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            let p: Vec<f64> = e.iter().map(|a| a / sum).collect();
            let cls = class[i] as usize;
            let l = max + sum.ln() - z[cls];
            loss += wi * l;
            let mut res = p.clone();
            res[cls] -= 1.0;
            let pu: f64 = p.iter().zip(&u).map(|(a, b)| a * b).sum();
            let dd: f64 = res.iter().zip(&u).map(|(a, b)| a * b).sum();
            per.push((l, dd));
            let rows_of_model = d + usize::from(intercept);
            for j in 0..rows_of_model {
                let xij = if j < d { x[i * d + j] } else { 1.0 };
                for c in 0..k {
                    g[j * k + c] += wi * res[c] * xij;
                    h[j * k + c] += wi * p[c] * (u[c] - pu) * xij;
                }
            }
        }
        (loss, g, h, per)
    }

    /// The grouped dense multiclass kernel (groups of 4 rows plus a tail) and the CSR kernel
    /// (row by row) agree with the naive reference to 1e-12 relative: loss, ∇, ∇²·v and the
    /// per-sample (ℓᵢ, ∇ℓᵢ·v), on a minibatch with repeated rows and on the full batch.
    #[test]
    fn multiclass_kernels_match_the_naive_reference() {
        let (n, d) = (41, 30);
        let mut uniform = uniform_draws(0x2545_f491_4f6c_dd1d);
        let x: Vec<f64> = (0..n * d)
            .map(|_| {
                let keep = uniform() >= 0.4;
                let value = 2.0 * uniform() - 1.0;
                if keep { value } else { 0.0 }
            })
            .collect();
        let weight = |i: usize| 0.5 + (i % 3) as f64 * 0.25;
        let given: Vec<f64> = (0..n).map(weight).collect();
        // K = 7 and 10: the padded sparse kernel with one and two lane chunks; K = 35: the
        // generic sparse kernel.
        for (k, intercept) in [(7, false), (7, true), (10, true), (35, false)] {
            let class: Vec<u32> = (0..n).map(|i| ((i * 5 + 3) % k) as u32).collect();
            let dim = (d + usize::from(intercept)) * k;
            let y: Vec<f64> = (0..dim).map(|_| uniform() - 0.5).collect();
            let v: Vec<f64> = (0..dim).map(|_| uniform() - 0.5).collect();
            let dense = DenseMatrix::new(n, d, x.clone()).unwrap();
            let csr = csr_of(&x, n, d);
            let targets = || Targets::Multiclass {
                class: class.clone(),
                k,
            };
            let stores = [
                LogisticData::with_storage(
                    Design::Dense(dense.clone()),
                    targets(),
                    intercept,
                    true,
                ),
                LogisticData::with_storage(Design::Sparse(csr), targets(), intercept, false),
            ];
            assert!(stores[0].is_dense() && !stores[1].is_dense());
            let minibatch: Vec<usize> = vec![3, 17, 3, 40, 0, 22, 9, 9, 31, 12, 5];
            let full: Vec<usize> = (0..n).collect();
            for (rows, batch) in [
                (&minibatch, Batch::Indices(&minibatch)),
                (&full, Batch::Full),
            ] {
                let (loss, g, h, per) =
                    naive_multi(&x, d, &class, k, intercept, &y, &v, rows, weight);
                for data in &stores {
                    let (mut g2, mut h2) = (vec![0.0; dim], vec![0.0; dim]);
                    let mut per2 = Vec::new();
                    let mut record = |_: usize, l: f64, dd: f64, _: f64| per2.push((l, dd));
                    let loss2 = data.pass(
                        &y,
                        Some(&v),
                        batch,
                        Weights::Given(&given),
                        true,
                        Some(&mut g2),
                        Some(&mut h2),
                        matches!(batch, Batch::Indices(_)).then_some(&mut record as OnSample<'_>),
                    );
                    let close = |a: f64, b: f64, scale: f64| (a - b).abs() <= 1e-12 * scale;
                    assert!(close(loss, loss2, loss.abs()), "loss {loss} vs {loss2}");
                    let gs = g.iter().fold(0.0f64, |m, a| m.max(a.abs()));
                    let hs = h.iter().fold(0.0f64, |m, a| m.max(a.abs()));
                    for j in 0..dim {
                        assert!(close(g[j], g2[j], gs), "grad[{j}]: {} vs {}", g[j], g2[j]);
                        assert!(close(h[j], h2[j], hs), "hvp[{j}]: {} vs {}", h[j], h2[j]);
                    }
                    if matches!(batch, Batch::Full) {
                        // The product with the probabilities held at y.
                        let held = data.hold(&y).expect("multiclass targets are held");
                        let mut h3 = vec![f64::NAN; dim];
                        data.hvp_held(&held, &v, Weights::Given(&given), &mut h3);
                        for j in 0..dim {
                            assert!(
                                close(h[j], h3[j], hs),
                                "held hvp[{j}]: {} vs {}",
                                h[j],
                                h3[j]
                            );
                        }
                    }
                    if matches!(batch, Batch::Indices(_)) {
                        assert_eq!(per2.len(), per.len());
                        for ((l, dd), (l2, dd2)) in per.iter().zip(&per2) {
                            assert!(
                                close(*l, *l2, l.abs().max(1.0))
                                    && close(*dd, *dd2, dd.abs().max(1.0))
                            );
                        }
                    }
                }
            }
        }
    }

    /// (loss, ∇, ∇²·v, per-sample (i, ℓᵢ, ∇ℓᵢ·v)) of one pass.
    type PassResult = (f64, Vec<f64>, Vec<f64>, Vec<(usize, f64, f64)>);

    /// Full passes large enough to run as parallel blocks (here 2 blocks of 3,000 rows) give the
    /// same bits on one thread and on two, call the per-sample callback once per row in row
    /// order, and agree with the naive reference to 1e-12 relative (multiclass, dense and CSR;
    /// binary dense).
    #[test]
    fn parallel_blocks_give_the_same_bits_on_one_and_two_threads() {
        let (n, d, k) = (6000, 12, 7);
        let mut uniform = uniform_draws(0x9e37_79b9_7f4a_7c15);
        let x: Vec<f64> = (0..n * d)
            .map(|_| {
                let keep = uniform() >= 0.5;
                let value = 2.0 * uniform() - 1.0;
                if keep { value } else { 0.0 }
            })
            .collect();
        let class: Vec<u32> = (0..n).map(|i| ((i * 5 + 3) % k) as u32).collect();
        let labels: Vec<f64> = (0..n)
            .map(|i| if i % 3 == 0 { 1.0 } else { -1.0 })
            .collect();
        let dense = DenseMatrix::new(n, d, x.clone()).unwrap();
        let csr = csr_of(&x, n, d);
        let multi = || Targets::Multiclass {
            class: class.clone(),
            k,
        };
        let cases = [
            LogisticData::with_storage(Design::Dense(dense.clone()), multi(), true, true),
            LogisticData::with_storage(Design::Sparse(csr), multi(), true, false),
            LogisticData::with_storage(Design::Dense(dense), Targets::Binary(labels), false, true),
        ];
        let weight = |i: usize| 0.5 + (i % 4) as f64 * 0.25;
        let given: Vec<f64> = (0..n).map(weight).collect();
        for (case, data) in cases.iter().enumerate() {
            let dim = data.dim();
            assert!(
                data.blocks(RowSet::Range(0, n), 2 * dim) >= 2,
                "case {case}: one block"
            );
            let y: Vec<f64> = (0..dim).map(|_| uniform() - 0.5).collect();
            let v: Vec<f64> = (0..dim).map(|_| uniform() - 0.5).collect();
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    let (mut g, mut h, mut per) = (vec![0.0; dim], vec![0.0; dim], Vec::new());
                    let mut record = |i: usize, l: f64, dd: f64, _: f64| per.push((i, l, dd));
                    let loss = data.pass(
                        &y,
                        Some(&v),
                        Batch::Full,
                        Weights::Given(&given),
                        true,
                        Some(&mut g),
                        Some(&mut h),
                        Some(&mut record),
                    );
                    (loss, g, h, per)
                })
            };
            let one = run(1);
            let two = run(2);
            let bits = |r: &PassResult| {
                let mut b = vec![r.0.to_bits()];
                b.extend(r.1.iter().chain(&r.2).map(|a| a.to_bits()));
                b.extend(
                    r.3.iter()
                        .flat_map(|&(i, l, dd)| [i as u64, l.to_bits(), dd.to_bits()]),
                );
                b
            };
            assert_eq!(
                bits(&one),
                bits(&two),
                "case {case}: 1 and 2 threads differ"
            );
            let order: Vec<usize> = one.3.iter().map(|r| r.0).collect();
            assert_eq!(
                order,
                (0..n).collect::<Vec<_>>(),
                "case {case}: callback order"
            );
            // Held probabilities (multiclass): the same bits on one and two threads, and the
            // pass's ∇²·v to 1e-12 relative (they differ by the summation order of W x only).
            if case < 2 {
                let held_hvp = |threads: usize| {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    pool.install(|| {
                        let held = data.hold(&y).unwrap();
                        let mut h = vec![f64::NAN; dim];
                        data.hvp_held(&held, &v, Weights::Given(&given), &mut h);
                        h
                    })
                };
                let (h1, h2) = (held_hvp(1), held_hvp(2));
                let bits = |h: &[f64]| h.iter().map(|a| a.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&h1),
                    bits(&h2),
                    "case {case}: held, 1 and 2 threads differ"
                );
                let hs = one.2.iter().fold(0.0f64, |m, a| m.max(a.abs()));
                for (j, (a, b)) in one.2.iter().zip(&h1).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-12 * hs,
                        "case {case}: held hvp[{j}] {a} vs {b}"
                    );
                }
            } else {
                assert!(data.hold(&y).is_none(), "binary targets hold nothing");
            }
            if case < 2 {
                let rows: Vec<usize> = (0..n).collect();
                let (loss, g, h, per) = naive_multi(&x, d, &class, k, true, &y, &v, &rows, weight);
                let close = |a: f64, b: f64, scale: f64| (a - b).abs() <= 1e-12 * scale;
                assert!(close(loss, one.0, loss.abs()), "case {case}: loss");
                let gs = g.iter().fold(0.0f64, |m, a| m.max(a.abs()));
                let hs = h.iter().fold(0.0f64, |m, a| m.max(a.abs()));
                for j in 0..dim {
                    assert!(close(g[j], one.1[j], gs), "case {case}: grad[{j}]");
                    assert!(close(h[j], one.2[j], hs), "case {case}: hvp[{j}]");
                }
                for (&(l, dd), &(_, l2, dd2)) in per.iter().zip(&one.3) {
                    assert!(close(l, l2, l.abs().max(1.0)) && close(dd, dd2, dd.abs().max(1.0)));
                }
            }
        }
    }

    /// Every pass adds its rows × (padded row + target) bytes, on this thread only.
    #[test]
    fn passes_count_the_bytes_they_stream() {
        let (n, d) = (10, 22);
        let values: Vec<f64> = (0..n * d).map(|i| (i % 5) as f64 - 2.0).collect();
        let design = Design::Dense(DenseMatrix::new(n, d, values.clone()).unwrap());
        let labels: Vec<f64> = (0..n)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let data = LogisticData::new(design, Targets::Binary(labels.clone()), false);
        // 22 features pad to 24 f64 (192 bytes), plus an f64 label.
        let row = 24 * 8 + 8;
        let y = vec![0.1; d];
        let mut g = vec![0.0; d];
        let before = streamed_bytes();
        data.grad(&y, Batch::Indices(&[1, 4, 7, 9]), Weights::Uniform, &mut g);
        assert_eq!(streamed_bytes() - before, 4 * row);
        data.grad(&y, Batch::Full, Weights::Uniform, &mut g);
        assert_eq!(streamed_bytes() - before, (4 + n as u64) * row);
        // Sparse storage: 12 bytes per stored entry (value and column index), averaged over
        // the rows, plus a row pointer and the label: 4 entries over 2 rows, 24 + 8 + 8 bytes.
        let csr = CsrMatrix::new(
            2,
            3,
            vec![0, 2, 4],
            vec![0, 2, 1, 2],
            vec![1.0, 2.0, -1.0, 0.5],
        )
        .unwrap();
        let sparse = LogisticData::with_storage(
            Design::Sparse(csr),
            Targets::Binary(vec![1.0, -1.0]),
            false,
            false,
        );
        assert!(!sparse.is_dense());
        let mut g3 = vec![0.0; 3];
        let before = streamed_bytes();
        sparse.grad(
            &[0.1; 3],
            Batch::Indices(&[1, 0, 1]),
            Weights::Uniform,
            &mut g3,
        );
        assert_eq!(streamed_bytes() - before, 3 * 40);
    }

    /// Every value of `x` rounded to f32 (and back: the design f32 storage computes with).
    fn rounded(x: &[f64]) -> Vec<f64> {
        x.iter().map(|&a| f64::from(a as f32)).collect()
    }

    /// A design whose values are not exactly representable in f32 (else rounding would be a
    /// no-op and the tests below could not tell the storages apart), about half of them zero.
    fn generic_design(n: usize, d: usize, seed: u64) -> Vec<f64> {
        let mut uniform = uniform_draws(seed);
        (0..n * d)
            .map(|_| {
                let keep = uniform() >= 0.5;
                let value = 2.0 * uniform() - 1.0;
                if keep { value } else { 0.0 }
            })
            .collect()
    }

    /// The bits of every output of one pass (loss, ∇, ∇²·v and the per-sample values).
    fn pass_bits(data: &LogisticData, y: &[f64], v: &[f64], batch: Batch<'_>) -> Vec<u64> {
        let dim = data.dim();
        let (mut g, mut h, mut per) = (vec![0.0; dim], vec![0.0; dim], Vec::new());
        let mut record = |i: usize, l: f64, dd: f64, _: f64| per.push((i, l, dd));
        let given: Vec<f64> = (0..data.n()).map(|i| 0.5 + (i % 3) as f64 * 0.25).collect();
        let loss = data.pass(
            y,
            Some(v),
            batch,
            Weights::Given(&given),
            true,
            Some(&mut g),
            Some(&mut h),
            Some(&mut record),
        );
        let mut bits = vec![loss.to_bits()];
        bits.extend(g.iter().chain(&h).map(|a| a.to_bits()));
        bits.extend(
            per.iter()
                .flat_map(|&(i, l, dd)| [i as u64, l.to_bits(), dd.to_bits()]),
        );
        bits
    }

    /// f32 storage keeps each value rounded to nearest f32 and computes with it in f64: every
    /// kernel (binary on 1–4 lane chunks and wider, multiclass dense, CSR with K = 7, 10 and 35,
    /// minibatch with repeated rows and full parallel passes, the dense Hessian, the metrics)
    /// gives the same bits as f64 storage of the rounded design, and differs from the f64
    /// storage of the original design (so the values really were rounded). A pass streams
    /// half the bytes per dense value.
    #[test]
    fn f32_storage_gives_the_bits_of_f64_storage_of_the_rounded_data() {
        let n = 5000;
        let mut uniform = uniform_draws(0x51f3_2a7c_0de1_1b47);
        let batch: Vec<usize> = (0..70)
            .map(|t| (t * 37 + t / 5) % n)
            .chain([3, 3])
            .collect();
        // (features, classes (1 = binary), dense, intercept)
        let cases = [
            (6, 1, true, false),
            (22, 1, true, false),
            (30, 1, true, false),
            (40, 1, true, true),
            (22, 1, false, true),
            (12, 7, true, true),
            (12, 7, false, true),
            (12, 10, false, false),
            (9, 35, false, true),
        ];
        for (case, &(d, k, dense, intercept)) in cases.iter().enumerate() {
            let x = generic_design(n, d, 0x1234 + case as u64);
            let targets = || {
                if k == 1 {
                    Targets::Binary(
                        (0..n)
                            .map(|i| if i % 3 == 0 { 1.0 } else { -1.0 })
                            .collect(),
                    )
                } else {
                    Targets::Multiclass {
                        class: (0..n).map(|i| ((i * 5 + 3) % k) as u32).collect(),
                        k,
                    }
                }
            };
            let build = |values: &[f64]| {
                let design = if dense {
                    Design::Dense(DenseMatrix::new(n, d, values.to_vec()).unwrap())
                } else {
                    Design::Sparse(csr_of(values, n, d))
                };
                LogisticData::with_storage(design, targets(), intercept, dense)
            };
            let f32_data = build(&x).with_precision(Precision::F32);
            let rounded_f64 = build(&rounded(&x));
            let original = build(&x);
            assert_eq!(f32_data.precision(), Precision::F32);
            assert_eq!(f32_data.is_dense(), dense, "case {case}: layout kept");
            for (i, j) in [(0, 0), (7, d - 1), (n - 1, d / 2), (123, 1)] {
                assert_eq!(
                    f32_data.value_at(i, j).to_bits(),
                    f64::from(x[i * d + j] as f32).to_bits(),
                    "case {case}: stored value ({i}, {j})"
                );
            }
            let dim = f32_data.dim();
            let y: Vec<f64> = (0..dim).map(|_| uniform() - 0.5).collect();
            let v: Vec<f64> = (0..dim).map(|_| uniform() - 0.5).collect();
            for b in [Batch::Indices(&batch), Batch::Full] {
                let bits = pass_bits(&f32_data, &y, &v, b);
                assert_eq!(bits, pass_bits(&rounded_f64, &y, &v, b), "case {case}");
                assert_ne!(
                    bits,
                    pass_bits(&original, &y, &v, b),
                    "case {case}: not rounded"
                );
            }
            let eval = |data: &LogisticData| {
                let (loss, accuracy) = data.evaluate(&y);
                [loss.to_bits(), accuracy.to_bits()]
            };
            assert_eq!(eval(&f32_data), eval(&rounded_f64), "case {case}: metrics");
            if k == 1 {
                let hess = |data: &LogisticData| {
                    let (mut g, mut h) = (vec![0.0; dim], vec![0.0; dim * dim]);
                    let loss = data
                        .value_grad_hess(&y, Weights::Uniform, &mut g, &mut h)
                        .unwrap();
                    let mut bits = vec![loss.to_bits()];
                    bits.extend(g.iter().chain(&h).map(|a| a.to_bits()));
                    bits
                };
                assert_eq!(hess(&f32_data), hess(&rounded_f64), "case {case}: Hessian");
            }
            if dense {
                let bytes = |data: &LogisticData| {
                    let mut g = vec![0.0; dim];
                    let before = streamed_bytes();
                    data.grad(&y, Batch::Indices(&batch), Weights::Uniform, &mut g);
                    streamed_bytes() - before
                };
                let stride = padded_len(d) as u64;
                let target = if k == 1 { 8 } else { 4 };
                let rows = batch.len() as u64;
                assert_eq!(bytes(&original), rows * (8 * stride + target));
                assert_eq!(bytes(&f32_data), rows * (4 * stride + target));
            }
        }
    }

    /// The quadratic-in-data case: at y = 0 every binary curvature is σ'(0) = 1/4, so the
    /// Hessian product is Hv = (1/4n) Σᵢ xᵢ (xᵢ·v), a quadratic function of the data alone. With
    /// each value rounded to f32, x̃ = x + δ with |δ| ≤ u|x| (u = 2⁻²⁴, round to nearest), the
    /// change is bounded entry by entry by
    ///   |H̃v − Hv|_j ≤ (1/4n) Σᵢ (|δᵢⱼ| |xᵢ·v| + |x̃ᵢⱼ| |δᵢ|·|v|) ≤ (u/4n) Σᵢ (|xᵢⱼ| |xᵢ·v| + |x̃ᵢⱼ| |xᵢ|·|v|),
    /// plus the f64 rounding of both computations (≤ 4(d + n)·2⁻⁵³ of Σ|terms|, a slack of
    /// 1e-12 relative here). The test checks the bound entry by entry, and that the change is
    /// not zero (the data did change).
    #[test]
    fn f32_storage_changes_a_quadratic_in_data_result_only_by_the_rounding_of_the_data() {
        let (n, d) = (3000, 22);
        let x = generic_design(n, d, 0xabcd_ef01);
        let labels: Vec<f64> = (0..n)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let design = || Design::Dense(DenseMatrix::new(n, d, x.clone()).unwrap());
        let exact = LogisticData::new(design(), Targets::Binary(labels.clone()), false);
        let stored = exact.clone().with_precision(Precision::F32);
        let mut uniform = uniform_draws(77);
        let v: Vec<f64> = (0..d).map(|_| uniform() - 0.5).collect();
        let y = vec![0.0; d];
        let (mut h64, mut h32) = (vec![0.0; d], vec![0.0; d]);
        exact.hvp(&y, &v, Batch::Full, Weights::Uniform, &mut h64);
        stored.hvp(&y, &v, Batch::Full, Weights::Uniform, &mut h32);
        let u = 2f64.powi(-24);
        let xr = rounded(&x);
        let mut changed = false;
        for j in 0..d {
            let (mut first, mut scale) = (0.0, 0.0);
            for i in 0..n {
                let row = &x[i * d..(i + 1) * d];
                let xv: f64 = row.iter().zip(&v).map(|(a, b)| a * b).sum();
                let abs_xv: f64 = row.iter().zip(&v).map(|(a, b)| (a * b).abs()).sum();
                first += row[j].abs() * xv.abs() + xr[i * d + j].abs() * abs_xv;
                scale += row[j].abs() * abs_xv;
            }
            let bound = u * first / (4.0 * n as f64) + 1e-12 * scale / (4.0 * n as f64);
            let diff = (h32[j] - h64[j]).abs();
            assert!(
                diff <= bound,
                "entry {j}: |change| {diff:e} > bound {bound:e}"
            );
            changed |= diff > 0.0;
        }
        assert!(changed, "f32 storage left the Hessian product unchanged");
    }

    /// Padded rows start on a 64-byte boundary and keep their row count whatever the stored
    /// type and wherever the allocator puts the buffer (an f32 buffer can be 15 entries away
    /// from the next boundary).
    #[test]
    fn padded_rows_are_aligned_in_both_stored_types() {
        fn check<E: Elem>() {
            let mut keep = Vec::new();
            for n in 1..60 {
                for stride in [8, 16, 24] {
                    let rows = PaddedRows::<E>::zeros(n, stride);
                    assert_eq!(rows.n(), n);
                    assert_eq!(rows.row(0).as_ptr().addr() % 64, 0);
                    assert_eq!(rows.row(n - 1).len(), stride);
                    let copy = rows.clone();
                    assert_eq!(copy.row(0).as_ptr().addr() % 64, 0);
                    keep.push((rows, copy));
                }
            }
        }
        check::<f64>();
        check::<f32>();
    }
}
