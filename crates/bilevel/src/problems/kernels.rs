//! Lane kernels of the data-backed oracles: dot products and row updates over padded dense rows,
//! a branch-free vectorisable `exp`, and the SIMD dispatch.
//!
//! The loops spell out [`LANES`] independent accumulators and never fuse a multiply with an add,
//! so the compiler vectorises them at any width (two lanes with the portable x86-64 baseline,
//! four with AVX2, eight with AVX-512) and the *values* do not depend on the instruction set: a
//! run on a machine without AVX2 computes the same bits (`tests/simd_levels.rs` checks it).
//! [`dispatch`] runs a closure in a function compiled for the widest instruction set the CPU has
//! (runtime detection by `pulp`; `BILEVEL_SIMD` or [`set_simd_cap`] caps it), so that the
//! `#[inline(always)]` kernels inlined into it use wide registers without `-C target-cpu`.
//! AVX-512 matters beyond width: its 32 registers hold the model, the direction and both
//! accumulators of a 24-wide row kernel without spilling to the stack. Only the fixed-width
//! kernels that gain from it ask for it ([`WithLanes::wide`]); the rest run on AVX2.

/// Accumulator lanes of the row kernels (padded dense rows have a multiple of this many
/// entries).
pub(crate) const LANES: usize = 8;

/// The stored type of design values: `f64`, or `f32` for `precision = "f32"` (half the bytes
/// to stream). Values are widened to f64 on load (exactly: every f32 is an f64) and all
/// arithmetic stays f64, so a design stored in f32 gives the same bits as the same design
/// rounded to f32 and stored in f64.
pub(crate) trait Elem: Copy + Default + std::fmt::Debug + Send + Sync + 'static {
    /// Bytes per stored value.
    const BYTES: usize = std::mem::size_of::<Self>();
    /// The value as f64 (exact).
    fn wide(self) -> f64;
    /// `x` rounded to the stored type (round to nearest).
    fn narrow(x: f64) -> Self;
    /// One lane chunk widened.
    #[inline(always)]
    fn lanes(a: &[Self; LANES]) -> [f64; LANES] {
        a.map(Self::wide)
    }
}

impl Elem for f64 {
    #[inline(always)]
    fn wide(self) -> f64 {
        self
    }
    #[inline(always)]
    fn narrow(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn lanes(a: &[f64; LANES]) -> [f64; LANES] {
        *a
    }
}

impl Elem for f32 {
    #[inline(always)]
    fn wide(self) -> f64 {
        f64::from(self)
    }
    #[inline(always)]
    fn narrow(x: f64) -> Self {
        x as f32
    }
}

/// Instruction-set levels of the kernels, narrowest first. The values of every kernel are the
/// same at every level (no fused multiply-adds, one fixed summation order); only the speed
/// differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// Portable code (whatever the compiler's baseline vectorises).
    Plain = 0,
    /// x86-64-v3: AVX2 (two 256-bit registers per eight lanes).
    Avx2 = 1,
    /// x86-64-v4: AVX-512 (one 512-bit register per eight lanes, 32 registers).
    Avx512 = 2,
}

impl SimdLevel {
    /// The widest level this CPU supports.
    pub fn detected() -> Self {
        static DETECTED: std::sync::OnceLock<SimdLevel> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if pulp::x86::V4::try_new().is_some() {
                    return SimdLevel::Avx512;
                }
                if pulp::x86::V3::try_new().is_some() {
                    return SimdLevel::Avx2;
                }
            }
            SimdLevel::Plain
        })
    }

    /// Parses `plain`, `avx2` or `avx512`.
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "plain" | "scalar" => Some(Self::Plain),
            "avx2" | "v3" => Some(Self::Avx2),
            "avx512" | "v4" => Some(Self::Avx512),
            _ => None,
        }
    }

    /// The name [`parse`](Self::parse) reads.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Avx2 => "avx2",
            Self::Avx512 => "avx512",
        }
    }
}

/// The cap on the level (u8::MAX: not set yet, read `BILEVEL_SIMD` on first use).
static LEVEL_CAP: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(u8::MAX);

/// Caps the instruction set of the kernels at `cap` (the kernels use the widest level the CPU
/// supports up to it). The environment variable `BILEVEL_SIMD` (`plain`, `avx2`, `avx512`) sets
/// the initial cap. Results do not depend on it; this exists to measure and to test that.
pub fn set_simd_cap(cap: SimdLevel) {
    LEVEL_CAP.store(cap as u8, std::sync::atomic::Ordering::Relaxed);
}

/// The level the kernels run at now: the detected level, capped by [`set_simd_cap`] or
/// `BILEVEL_SIMD`.
pub fn simd_level() -> SimdLevel {
    use std::sync::atomic::Ordering;
    let mut cap = LEVEL_CAP.load(Ordering::Relaxed);
    if cap == u8::MAX {
        let from_env = std::env::var("BILEVEL_SIMD")
            .ok()
            .and_then(|v| SimdLevel::parse(&v))
            .unwrap_or(SimdLevel::Avx512);
        // Only the first reader stores the environment's cap; a cap set meanwhile wins.
        let _ = LEVEL_CAP.compare_exchange(
            u8::MAX,
            from_env as u8,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        cap = LEVEL_CAP.load(Ordering::Relaxed);
    }
    let capped = match cap {
        0 => SimdLevel::Plain,
        1 => SimdLevel::Avx2,
        _ => SimdLevel::Avx512,
    };
    capped.min(SimdLevel::detected())
}

/// Runs `f` compiled for the widest SIMD level allowed ([`simd_level`]), so that the
/// `#[inline(always)]` loops inlined into it vectorise at that width.
#[inline(always)]
pub(crate) fn dispatch<R>(f: impl FnOnce() -> R) -> R {
    struct Closure<F>(F);
    impl<R, F: FnOnce() -> R> WithLanes for Closure<F> {
        type Output = R;
        #[inline(always)]
        fn run<S: Simd8>(self, _: S) -> R {
            (self.0)()
        }
    }
    dispatch_lanes(Closure(f))
}

/// Eight f64 lanes as a value: the explicit-SIMD building block of the small-d kernels (the
/// model, the direction and the accumulators stay in registers). [`Plain`] is portable plain
/// code; on x86-64 the lanes are two 256-bit registers (AVX2) or one 512-bit register (AVX-512). Both add and multiply lane by
/// lane (no fused multiply-add) and [`hsum`](Self::hsum) adds in the order of [`hsum`], so the
/// results are bit-identical across instruction sets.
pub(crate) trait Simd8: Copy + Send + Sync + 'static {
    /// The eight lanes.
    type V: Copy + Send + Sync;
    /// Every lane = x.
    fn splat(self, x: f64) -> Self::V;
    /// From an array.
    fn load(self, a: &[f64; LANES]) -> Self::V;
    /// To an array.
    fn store(self, v: Self::V) -> [f64; LANES];
    /// Lane-wise a + b.
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    /// Lane-wise a · b.
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    /// Sum of the lanes, in the order of [`hsum`].
    fn hsum(self, v: Self::V) -> f64;
    /// Runs `f` in a function compiled for this instruction set.
    fn run<R>(self, f: impl FnOnce() -> R) -> R;
    /// A hint to bring the cache line holding `x` into L1 ahead of its use (no effect on any
    /// value; a no-op where the instruction set has no prefetch).
    #[inline(always)]
    fn prefetch<T>(self, x: &T) {
        let _ = x;
    }
}

/// Portable [`Simd8`] (plain arrays; the compiler vectorises what it can).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plain;

impl Simd8 for Plain {
    type V = [f64; LANES];
    #[inline(always)]
    fn splat(self, x: f64) -> Self::V {
        [x; LANES]
    }
    #[inline(always)]
    fn load(self, a: &[f64; LANES]) -> Self::V {
        *a
    }
    #[inline(always)]
    fn store(self, v: Self::V) -> [f64; LANES] {
        v
    }
    #[inline(always)]
    fn add(self, a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|k| a[k] + b[k])
    }
    #[inline(always)]
    fn mul(self, a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|k| a[k] * b[k])
    }
    #[inline(always)]
    fn hsum(self, v: Self::V) -> f64 {
        hsum(v)
    }
    #[inline(always)]
    fn run<R>(self, f: impl FnOnce() -> R) -> R {
        f()
    }
}

#[cfg(target_arch = "x86_64")]
impl Simd8 for pulp::x86::V3 {
    type V = [pulp::f64x4; 2];
    #[inline(always)]
    fn splat(self, x: f64) -> Self::V {
        let s = pulp::Simd::splat_f64s(self, x);
        [s, s]
    }
    #[inline(always)]
    fn load(self, a: &[f64; LANES]) -> Self::V {
        pulp::cast(*a)
    }
    #[inline(always)]
    fn store(self, v: Self::V) -> [f64; LANES] {
        pulp::cast(v)
    }
    #[inline(always)]
    fn add(self, a: Self::V, b: Self::V) -> Self::V {
        [
            pulp::Simd::add_f64s(self, a[0], b[0]),
            pulp::Simd::add_f64s(self, a[1], b[1]),
        ]
    }
    #[inline(always)]
    fn mul(self, a: Self::V, b: Self::V) -> Self::V {
        [
            pulp::Simd::mul_f64s(self, a[0], b[0]),
            pulp::Simd::mul_f64s(self, a[1], b[1]),
        ]
    }
    #[inline(always)]
    fn hsum(self, v: Self::V) -> f64 {
        // Lanes k and k + 4 first, as in `hsum`.
        let b: [f64; 4] = pulp::cast(pulp::Simd::add_f64s(self, v[0], v[1]));
        (b[0] + b[2]) + (b[1] + b[3])
    }
    #[inline(always)]
    fn run<R>(self, f: impl FnOnce() -> R) -> R {
        pulp::Simd::vectorize(self, f)
    }
    #[inline(always)]
    fn prefetch<T>(self, x: &T) {
        self.sse
            ._mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(std::ptr::from_ref(x).cast());
    }
}

#[cfg(target_arch = "x86_64")]
impl Simd8 for pulp::x86::V4 {
    type V = pulp::f64x8;
    #[inline(always)]
    fn splat(self, x: f64) -> Self::V {
        pulp::Simd::splat_f64s(self, x)
    }
    #[inline(always)]
    fn load(self, a: &[f64; LANES]) -> Self::V {
        pulp::cast(*a)
    }
    #[inline(always)]
    fn store(self, v: Self::V) -> [f64; LANES] {
        pulp::cast(v)
    }
    #[inline(always)]
    fn add(self, a: Self::V, b: Self::V) -> Self::V {
        pulp::Simd::add_f64s(self, a, b)
    }
    #[inline(always)]
    fn mul(self, a: Self::V, b: Self::V) -> Self::V {
        pulp::Simd::mul_f64s(self, a, b)
    }
    #[inline(always)]
    fn hsum(self, v: Self::V) -> f64 {
        // Lanes k and k + 4 first (one 256-bit add), as in `hsum`.
        let halves: [pulp::f64x4; 2] = pulp::cast(v);
        let b: [f64; 4] = pulp::cast(pulp::Simd::add_f64s(*self, halves[0], halves[1]));
        (b[0] + b[2]) + (b[1] + b[3])
    }
    #[inline(always)]
    fn run<R>(self, f: impl FnOnce() -> R) -> R {
        pulp::Simd::vectorize(self, f)
    }
    #[inline(always)]
    fn prefetch<T>(self, x: &T) {
        self.sse
            ._mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(std::ptr::from_ref(x).cast());
    }
}

/// A computation generic over the [`Simd8`] instruction set.
pub(crate) trait WithLanes {
    /// What it returns.
    type Output;
    /// Runs it with `s`.
    fn run<S: Simd8>(self, s: S) -> Self::Output;
    /// Whether it gains from AVX-512: the fixed-width kernels whose model, direction and
    /// accumulators fit the 32 registers do (faster than AVX2); the compiler-vectorised
    /// variable-width loops run about 3× slower with 512-bit registers on the machine we
    /// measured (`bilevel bench --scaling`, d ≥ 100, with `BILEVEL_SIMD=avx2` against
    /// `avx512`), so they stay on AVX2.
    fn wide(&self) -> bool {
        false
    }
}

/// Runs `w` with the widest [`Simd8`] allowed ([`simd_level`]), inside a function compiled for
/// it.
#[inline(always)]
pub(crate) fn dispatch_lanes<W: WithLanes>(w: W) -> W::Output {
    #[cfg(target_arch = "x86_64")]
    {
        static V4: std::sync::OnceLock<Option<pulp::x86::V4>> = std::sync::OnceLock::new();
        static V3: std::sync::OnceLock<Option<pulp::x86::V3>> = std::sync::OnceLock::new();
        let level = simd_level();
        if level == SimdLevel::Avx512
            && w.wide()
            && let Some(v4) = *V4.get_or_init(pulp::x86::V4::try_new)
        {
            return v4.run(
                #[inline(always)]
                || w.run(v4),
            );
        }
        if level >= SimdLevel::Avx2
            && let Some(v3) = *V3.get_or_init(pulp::x86::V3::try_new)
        {
            return v3.run(
                #[inline(always)]
                || w.run(v3),
            );
        }
    }
    w.run(Plain)
}

/// `n` rounded up to a multiple of [`LANES`].
#[inline]
pub(crate) fn padded_len(n: usize) -> usize {
    n.div_ceil(LANES) * LANES
}

/// Sum of the lanes in a fixed order (halves, then quarters, then pairs).
#[inline(always)]
pub(crate) fn hsum(a: [f64; LANES]) -> f64 {
    let b = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    let c = [b[0] + b[2], b[1] + b[3]];
    c[0] + c[1]
}

/// A read-only vector seen as full lane chunks plus one zero-padded tail chunk, matching a
/// padded dense row of the same logical length.
#[derive(Clone, Copy)]
pub(crate) struct Lanes<'a> {
    /// The first ⌊len / LANES⌋ · LANES entries.
    pub main: &'a [f64],
    /// The remaining entries, zero-padded.
    pub tail: [f64; LANES],
    /// Whether there is a tail chunk (len not a multiple of LANES).
    pub has_tail: bool,
}

impl<'a> Lanes<'a> {
    /// `v` split into full chunks and a padded tail.
    #[inline(always)]
    pub fn new(v: &'a [f64]) -> Self {
        let m = v.len() / LANES * LANES;
        let mut tail = [0.0; LANES];
        tail[..v.len() - m].copy_from_slice(&v[m..]);
        Self {
            main: &v[..m],
            tail,
            has_tail: m < v.len(),
        }
    }
}

/// An output vector accumulated as full lane chunks plus a local tail chunk;
/// [`finish`](Self::finish) writes the tail back.
pub(crate) struct LanesMut<'a> {
    main: &'a mut [f64],
    rest: &'a mut [f64],
    /// The tail accumulator.
    pub tail: [f64; LANES],
    /// Whether there is a tail chunk.
    pub has_tail: bool,
}

impl<'a> LanesMut<'a> {
    /// Accumulates onto the current contents of `v`.
    #[inline(always)]
    pub fn new(v: &'a mut [f64]) -> Self {
        let m = v.len() / LANES * LANES;
        let (main, rest) = v.split_at_mut(m);
        let mut tail = [0.0; LANES];
        tail[..rest.len()].copy_from_slice(rest);
        let has_tail = !rest.is_empty();
        Self {
            main,
            rest,
            tail,
            has_tail,
        }
    }
    /// Writes the tail back into the vector.
    #[inline(always)]
    pub fn finish(self) {
        let n = self.rest.len();
        self.rest.copy_from_slice(&self.tail[..n]);
    }
}

// The kernels below go through fixed-size arrays (`as_chunks`): loads into locals, arithmetic,
// stores, so the vectoriser does not have to prove that output and input slices do not alias.

/// ⟨row, a⟩ for a padded row (length = padded length of `a`).
#[inline(always)]
pub(crate) fn dot_row<E: Elem>(row: &[E], a: &Lanes<'_>) -> f64 {
    let mut acc = [0.0; LANES];
    let (rm, rt) = row.split_at(a.main.len());
    for (r, y) in rm
        .as_chunks::<LANES>()
        .0
        .iter()
        .zip(a.main.as_chunks::<LANES>().0)
    {
        for k in 0..LANES {
            acc[k] += r[k].wide() * y[k];
        }
    }
    if a.has_tail {
        let rt = &rt.as_chunks::<LANES>().0[0];
        for k in 0..LANES {
            acc[k] += rt[k].wide() * a.tail[k];
        }
    }
    hsum(acc)
}

/// (⟨row, a⟩, ⟨row, b⟩) in one pass over the row.
#[inline(always)]
pub(crate) fn dot2_row<E: Elem>(row: &[E], a: &Lanes<'_>, b: &Lanes<'_>) -> (f64, f64) {
    let mut acc_a = [0.0; LANES];
    let mut acc_b = [0.0; LANES];
    let (rm, rt) = row.split_at(a.main.len());
    for ((r, y), v) in rm
        .as_chunks::<LANES>()
        .0
        .iter()
        .zip(a.main.as_chunks::<LANES>().0)
        .zip(b.main.as_chunks::<LANES>().0)
    {
        for k in 0..LANES {
            acc_a[k] += r[k].wide() * y[k];
            acc_b[k] += r[k].wide() * v[k];
        }
    }
    if a.has_tail {
        let rt = &rt.as_chunks::<LANES>().0[0];
        for k in 0..LANES {
            acc_a[k] += rt[k].wide() * a.tail[k];
            acc_b[k] += rt[k].wide() * b.tail[k];
        }
    }
    (hsum(acc_a), hsum(acc_b))
}

/// out ← out + c · row.
#[inline(always)]
pub(crate) fn axpy_row<E: Elem>(c: f64, row: &[E], out: &mut LanesMut<'_>) {
    let (rm, rt) = row.split_at(out.main.len());
    for (r, o) in rm
        .as_chunks::<LANES>()
        .0
        .iter()
        .zip(out.main.as_chunks_mut::<LANES>().0)
    {
        let mut t = *o;
        for k in 0..LANES {
            t[k] += c * r[k].wide();
        }
        *o = t;
    }
    if out.has_tail {
        let rt = &rt.as_chunks::<LANES>().0[0];
        for k in 0..LANES {
            out.tail[k] += c * rt[k].wide();
        }
    }
}

/// out₁ ← out₁ + c₁ · row, out₂ ← out₂ + c₂ · row in one pass over the row.
#[inline(always)]
pub(crate) fn axpy2_row<E: Elem>(
    c1: f64,
    c2: f64,
    row: &[E],
    out1: &mut LanesMut<'_>,
    out2: &mut LanesMut<'_>,
) {
    let (rm, rt) = row.split_at(out1.main.len());
    for ((r, o1), o2) in rm
        .as_chunks::<LANES>()
        .0
        .iter()
        .zip(out1.main.as_chunks_mut::<LANES>().0)
        .zip(out2.main.as_chunks_mut::<LANES>().0)
    {
        let (mut t1, mut t2) = (*o1, *o2);
        for k in 0..LANES {
            t1[k] += c1 * r[k].wide();
            t2[k] += c2 * r[k].wide();
        }
        *o1 = t1;
        *o2 = t2;
    }
    if out1.has_tail {
        let rt = &rt.as_chunks::<LANES>().0[0];
        for k in 0..LANES {
            out1.tail[k] += c1 * rt[k].wide();
            out2.tail[k] += c2 * rt[k].wide();
        }
    }
}

/// ⟨a, b⟩ for two slices whose (equal) length is a multiple of [`LANES`].
#[inline(always)]
pub(crate) fn dot_full<E: Elem>(a: &[E], b: &[f64]) -> f64 {
    let mut acc = [0.0; LANES];
    for (x, y) in a
        .as_chunks::<LANES>()
        .0
        .iter()
        .zip(b.as_chunks::<LANES>().0)
    {
        for k in 0..LANES {
            acc[k] += x[k].wide() * y[k];
        }
    }
    hsum(acc)
}

/// ⟨a_r, b⟩ for `R` slices a_r at once, each computed exactly as [`dot_full`]`(a_r, b)` (same
/// lanes, same order, same bits): `R` independent accumulator chains hide the add latency, and
/// each chunk of `b` is loaded once for all `R` rows.
#[inline(always)]
pub(crate) fn dot_full_rows<const R: usize, E: Elem>(rows: [&[E]; R], b: &[f64]) -> [f64; R] {
    let b = b.as_chunks::<LANES>().0;
    let rows = rows.map(|a| &a.as_chunks::<LANES>().0[..b.len()]);
    let mut acc = [[0.0; LANES]; R];
    for (j, y) in b.iter().enumerate() {
        for r in 0..R {
            let x = &rows[r][j];
            for k in 0..LANES {
                acc[r][k] += x[k].wide() * y[k];
            }
        }
    }
    acc.map(hsum)
}

/// out ← out + c₀ x₀ + … + c_{R−1} x_{R−1}, the terms added in row order: each entry rounds
/// exactly as `R` successive [`axpy_full`] calls (no fused multiply-add), while `out` is loaded
/// and stored once instead of `R` times.
#[inline(always)]
pub(crate) fn axpy_full_rows<const R: usize, E: Elem>(
    c: [f64; R],
    rows: [&[E]; R],
    out: &mut [f64],
) {
    let out = out.as_chunks_mut::<LANES>().0;
    let rows = rows.map(|a| &a.as_chunks::<LANES>().0[..out.len()]);
    for (j, o) in out.iter_mut().enumerate() {
        let mut t = *o;
        for r in 0..R {
            let x = &rows[r][j];
            for k in 0..LANES {
                t[k] += c[r] * x[k].wide();
            }
        }
        *o = t;
    }
}

/// out ← out + c · x for slices whose (equal) length is a multiple of [`LANES`].
#[inline(always)]
pub(crate) fn axpy_full<E: Elem>(c: f64, x: &[E], out: &mut [f64]) {
    for (x, o) in x
        .as_chunks::<LANES>()
        .0
        .iter()
        .zip(out.as_chunks_mut::<LANES>().0)
    {
        let mut t = *o;
        for k in 0..LANES {
            t[k] += c * x[k].wide();
        }
        *o = t;
    }
}

/// eˣ, branch-free so that loops over it vectorise: Cody–Waite reduction x = k ln 2 + r with
/// |r| ≤ ln 2 / 2, the degree-13 Taylor polynomial of eʳ (truncation error below 5e-18
/// relative, evaluated by Estrin's scheme), and 2ᵏ applied in two halves so that gradual
/// underflow and overflow come out right.
/// Agrees with the correctly rounded value to a few ulps over the whole range; exp(−∞) = 0,
/// exp(+∞) = +∞, NaN → NaN.
#[inline(always)]
pub(crate) fn exp(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    // fdlibm's split of ln 2: the high part has 32 significant bits, so k · LN2_HI is exact.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000); // 0.693147180369123816490
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76); // 1.90821492927058770002e-10
    // 1.5 · 2⁵²: adding it rounds to an integer held in the low mantissa bits.
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    // Beyond these bounds the result is 0 or +∞ anyway (NaN passes through `clamp`).
    let x = x.clamp(-746.0, 710.0);
    let t = x * LOG2E + SHIFT;
    let kf = t - SHIFT;
    let r = (x - kf * LN2_HI) - kf * LN2_LO;
    // Σ_{j ≤ 13} r^j / j! by Estrin's scheme (depth 4 instead of Horner's 13: the lanes of a
    // vectorised loop finish sooner).
    let r2 = r * r;
    let r4 = r2 * r2;
    let r8 = r4 * r4;
    const C: [f64; 14] = [
        1.0,
        1.0,
        0.5,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5_040.0,
        1.0 / 40_320.0,
        1.0 / 362_880.0,
        1.0 / 3_628_800.0,
        1.0 / 39_916_800.0,
        1.0 / 479_001_600.0,
        1.0 / 6_227_020_800.0,
    ];
    let q0 = C[0] + C[1] * r;
    let q1 = C[2] + C[3] * r;
    let q2 = C[4] + C[5] * r;
    let q3 = C[6] + C[7] * r;
    let q4 = C[8] + C[9] * r;
    let q5 = C[10] + C[11] * r;
    let q6 = C[12] + C[13] * r;
    let s0 = q0 + q1 * r2;
    let s1 = q2 + q3 * r2;
    let s2 = q4 + q5 * r2;
    let o0 = s0 + s1 * r4;
    let o1 = s2 + q6 * r4;
    let p = o0 + o1 * r8;
    let k = t.to_bits().wrapping_sub(SHIFT.to_bits()) as i64;
    let k1 = k >> 1;
    let k2 = k - k1;
    let s1 = f64::from_bits(((k1 + 1023) as u64) << 52);
    let s2 = f64::from_bits(((k2 + 1023) as u64) << 52);
    p * s1 * s2
}

/// ln(1 + t) for t ∈ [0, 1] (the softplus of a logistic loss, t = e^{−|m|}), branch-free so that
/// loops over it vectorise: u = 1 + t with the rounding error restored by
/// c = (t − (u − 1)) / u, u = 2ᵏ f with f ∈ [√2/2, √2] (k ∈ {0, 1}), and ln f = 2 atanh s with
/// s = (f − 1)/(f + 1), |s| ≤ 0.1716, summed to s²¹ (truncation below 1e-18 relative).
/// Agrees with the correctly rounded value to a few ulps; NaN → NaN.
#[inline(always)]
pub(crate) fn ln_1p_unit(t: f64) -> f64 {
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    let u = 1.0 + t;
    let c = (t - (u - 1.0)) / u;
    let big = u > std::f64::consts::SQRT_2;
    let f = if big { 0.5 * u } else { u };
    let k = if big { 1.0 } else { 0.0 };
    let s = (f - 1.0) / (f + 1.0);
    let z = s * s;
    // Σ_{i ≤ 9} zⁱ / (2i + 3) by Estrin's scheme.
    let z2 = z * z;
    let z4 = z2 * z2;
    let z8 = z4 * z4;
    let q0 = 1.0 / 3.0 + z * (1.0 / 5.0);
    let q1 = 1.0 / 7.0 + z * (1.0 / 9.0);
    let q2 = 1.0 / 11.0 + z * (1.0 / 13.0);
    let q3 = 1.0 / 15.0 + z * (1.0 / 17.0);
    let q4 = 1.0 / 19.0 + z * (1.0 / 21.0);
    let p = (q0 + q1 * z2) + (q2 + q3 * z2) * z4 + q4 * z8;
    let two_s = 2.0 * s;
    let ln_f = two_s + two_s * z * p;
    k * LN2_HI + (ln_f + (k * LN2_LO + c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm_to_a_few_ulps() {
        // Relative error bound: a few ulps (the polynomial's rounding plus the reduction).
        const TOL: f64 = 8.0 * f64::EPSILON;
        let mut x = -745.0;
        while x < 709.7 {
            let (a, b) = (exp(x), x.exp());
            if b > f64::MIN_POSITIVE {
                assert!(((a - b) / b).abs() <= TOL, "exp({x}) = {a} vs {b}");
            } else {
                // Subnormal results: absolute error within a couple of subnormal ulps.
                assert!((a - b).abs() <= 4.0 * 4.9e-324, "exp({x}) = {a} vs {b}");
            }
            x += 0.0137;
        }
        for x in [-1e-300, 0.0, 1e-17, 0.5, -0.5, 1.0, 709.78, -708.4] {
            let (a, b) = (exp(x), x.exp());
            assert!(((a - b) / b).abs() <= TOL, "exp({x}) = {a} vs {b}");
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp(1000.0), f64::INFINITY);
        assert!(exp(f64::NAN).is_nan());
    }

    #[test]
    fn ln_1p_unit_matches_libm_to_a_few_ulps() {
        // Relative error bound: a few ulps (the division for s, the polynomial's rounding).
        const TOL: f64 = 4.0 * f64::EPSILON;
        let mut worst: f64 = 0.0;
        let mut check = |t: f64| {
            let (a, b) = (ln_1p_unit(t), t.ln_1p());
            let err = if b == 0.0 {
                a.abs()
            } else {
                ((a - b) / b).abs()
            };
            worst = worst.max(err);
            assert!(err <= TOL, "ln_1p_unit({t:e}) = {a:e} vs {b:e}");
        };
        for i in 0..=200_000 {
            check(i as f64 / 200_000.0);
        }
        // Near the reduction's switch (1 + t = √2) and tiny arguments (1 + t rounds to 1).
        for i in -1000..=1000 {
            check(std::f64::consts::SQRT_2 - 1.0 + i as f64 * 1e-15);
        }
        let mut t = 1.0;
        while t > 1e-300 {
            check(t);
            t *= 0.37;
        }
        eprintln!("worst relative error {worst:e}");
        assert_eq!(ln_1p_unit(0.0), 0.0);
        assert_eq!(ln_1p_unit(1.0), std::f64::consts::LN_2);
        assert!(ln_1p_unit(f64::NAN).is_nan());
    }

    #[test]
    fn lane_kernels_match_plain_loops() {
        for n in [1usize, 7, 8, 9, 22, 24, 31] {
            let a: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f64> = (0..n).map(|i| (i as f64 * 0.11).cos()).collect();
            let mut row = a.clone();
            row.resize(padded_len(n), 0.0);
            let (la, lb) = (Lanes::new(&a), Lanes::new(&b));
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            // Different summation orders: agreement to rounding.
            assert!((dot_row(&row, &lb) - plain).abs() < 1e-13);
            let (d1, d2) = dot2_row(&row, &la, &lb);
            assert_eq!(d1.to_bits(), dot_row(&row, &la).to_bits());
            assert_eq!(d2.to_bits(), dot_row(&row, &lb).to_bits());
            let mut o1 = b.clone();
            let mut o2 = vec![1.0; n];
            {
                let mut l1 = LanesMut::new(&mut o1);
                let mut l2 = LanesMut::new(&mut o2);
                axpy2_row(2.0, -1.0, &row, &mut l1, &mut l2);
                axpy_row(0.5, &row, &mut l1);
                l1.finish();
                l2.finish();
            }
            for i in 0..n {
                assert_eq!(o1[i], b[i] + 2.0 * a[i] + 0.5 * a[i]);
                assert_eq!(o2[i], 1.0 - a[i]);
            }
        }
    }
}
