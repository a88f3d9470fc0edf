//! # SABA — SAGA-type variance reduction of the SOBA directions
//!
//! M. Dagréou, P. Ablin, S. Vaiter, T. Moreau. *A framework for bilevel optimization that enables
//! stochastic and global variance reduction algorithms.* NeurIPS 2022 (arXiv:2201.13409).
//! algorithms.md §8.4 (SOBA) and §9.9 (benchmark defaults).
//!
//! ## Update (iteration t, inner samples ξ ⊂ {1..n_g}, outer samples ζ ⊂ {1..n_f})
//! The SOBA directions at (y_t, v_t, x_t) are finite sums over samples,
//! $$ D_y = \nabla_y g, \qquad D_v = \nabla^2_{yy} g\thinspace v - \nabla_y f, \qquad
//!    D_x = \nabla_x f - \nabla^2_{xy} g\thinspace v, $$
//! each of whose five per-sample terms — $\nabla_y g_i$, $\nabla^2_{yy} g_i\thinspace v$,
//! $\nabla^2_{xy} g_i\thinspace v$ (samples of g) and $\nabla_y f_j$, $\nabla_x f_j$ (samples of f) — is
//! estimated by SAGA: with a memory $m_i$ per sample (the term at the last point sample i was
//! drawn) and its mean $\bar m$,
//! $$ \hat\delta = \frac{1}{|\xi|} \sum_{i \in \xi} \big(\delta_i(y_t, v_t, x_t) - m_i\big) + \bar m,
//!    \qquad m_i \leftarrow \delta_i(y_t, v_t, x_t) \ (i \in \xi). $$
//! Then, as SOBA (+v convention, v ≈ +[∇²ᵧᵧg]⁻¹∇ᵧf):
//! $$ y_{t+1} = y_t - \rho \hat D_y, \qquad v_{t+1} = v_t - \rho \hat D_v, \qquad
//!    x_{t+1} = x_t - \gamma \hat D_x. $$
//! **Memory layout** (`memory`):
//! - `per_sample` (the paper): one memory row per sample. Every sample of a minibatch is then a
//!   separate oracle call (`Batch::Indices(&[i])`); a duplicate index inside one batch (possible
//!   at an epoch boundary) is handled consistently (all terms use the old memory, then the
//!   memory is written). Memory: n_g (2 dim y + dim x) + n_f (dim y + dim x) numbers.
//! - `per_batch` (the reference benchmark's layout): with `sampling = "contiguous"` the
//!   minibatches are fixed blocks of b consecutive samples, and SAGA runs over the ⌈n/b⌉ blocks
//!   (one memory row per block, weight 1/⌈n/b⌉ in the mean): one oracle call per term, as SOBA.
//!   When b does not divide n the last block wraps around to the first samples, and the
//!   average over blocks weights those samples twice (a slightly reweighted finite sum).
//!
//! The memories live in the state (checkpoints carry them). Initialisation (`init_memory`):
//! `full_pass` (default) fills the gradient memories with one pass at (x₀, y₀), so the
//! estimates are unbiased from the first step; the product memories start at 0, which is exact
//! because v₀ = 0. `zero` starts every memory at zero, as the reference benchmark's SABA does
//! (use it to replay the benchmark's runs; the first epoch's estimates are then biased).
//!
//! ## Oracle calls per iteration (checked by `tests/it/oracle_counts.rs`; b = batch size)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | b (per_batch: 1) | b (per_batch: 1) | each i ∈ ξ / j ∈ ζ (the block) |
//! | grad_x | – | b (per_batch: 1) | each j ∈ ζ (the block) |
//! | hvp_yy | b (per_batch: 1) | – | each i ∈ ξ (the block) |
//! | cross_xy | b (per_batch: 1) | – | each i ∈ ξ (the block) |
//!
//! Either way the samples touched per iteration equal SOBA's. `init` adds one pass over both
//! levels (per sample: grad_y n_g times on g, grad_x and grad_y n_f times on f; per block:
//! ⌈n/b⌉ calls each). benchopt's SABA uses the per-block layout: the same calls per iteration
//! as `memory = "per_batch"`.
//!
//! ## Parameters
//! | field | paper | default | range |
//! |-------|-------|---------|-------|
//! | `inner_lr` | ρ | `constant 0.1` | schedule |
//! | `outer_lr` | γ | `constant 0.1` | schedule |
//! | `batch_size` | — | 64 | ≥ 1 |
//! | `sampling` | — | `shuffled` | `shuffled`, `with_replacement`, `contiguous` (required by `per_batch`) |
//! | `memory` | — | `per_sample` | `per_sample`, `per_batch` |
//! | `init_memory` | — | `full_pass` | `full_pass`, `zero` (the reference benchmark) |
//!
//! Defaults: the reference benchmark's (algorithms.md §9.9: constant steps 0.1, batch 64); the
//! paper's per-sample memory.
//!
//! ## Example
//! ```
//! use bilevel::prelude::*;
//! let problem = bilevel::problems::quadratic::tiny();
//! let solver = SabaConfig { batch_size: 1, ..Default::default() }.build().unwrap();
//! let (x0, y0) = problem.start();
//! let mut state = solver.init(&problem, x0, y0, 0).unwrap();
//! for _ in 0..100 {
//!     solver.step(&problem, &mut state).unwrap();
//! }
//! assert_eq!(state.t, 100);
//! ```
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use serde::{Deserialize, Serialize};

use crate::core::linalg::{Scratch, axpy, rng_from_seed, serde_vector};
use crate::core::{
    Batch, Diagnostics, Fused, MinibatchSampler, Problem, Result, SamplingMode, Schedule, Solver,
    Vector, VectorExt,
};

/// What one SAGA memory row stands for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SabaMemoryLayout {
    /// One row per sample (the paper): per-sample oracle calls.
    #[default]
    PerSample,
    /// One row per contiguous block of `batch_size` samples (the reference benchmark): needs
    /// `sampling = "contiguous"`.
    PerBatch,
}

/// How SABA's memories start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SabaInitMemory {
    /// One full pass at (x₀, y₀) fills the gradient memories (unbiased from the first step).
    #[default]
    FullPass,
    /// Every memory starts at zero, as the reference benchmark's SABA does (no initial pass;
    /// the estimates are biased until every sample has been drawn once).
    Zero,
}

/// Configuration of SABA.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SabaConfig {
    /// ρ: step of y and v.
    pub inner_lr: Schedule,
    /// γ: step of x.
    pub outer_lr: Schedule,
    /// Minibatch size of ξ and ζ.
    pub batch_size: usize,
    /// How minibatches are drawn.
    pub sampling: SamplingMode,
    /// One memory row per sample or per contiguous block.
    pub memory: SabaMemoryLayout,
    /// How the memories start: a full pass (default) or zeros (the reference benchmark).
    pub init_memory: SabaInitMemory,
}

impl Default for SabaConfig {
    fn default() -> Self {
        Self {
            inner_lr: Schedule::constant(0.1),
            outer_lr: Schedule::constant(0.1),
            batch_size: 64,
            sampling: SamplingMode::Shuffled,
            memory: SabaMemoryLayout::PerSample,
            init_memory: SabaInitMemory::FullPass,
        }
    }
}

impl SabaConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        self.inner_lr.validate("inner_lr")?;
        self.outer_lr.validate("outer_lr")?;
        if self.memory == SabaMemoryLayout::PerBatch
            && self.sampling.order() != SamplingMode::Contiguous
        {
            return Err(crate::core::Error::config(
                "sampling",
                "memory = \"per_batch\" keeps one row per fixed block and needs sampling = \
                 \"contiguous\"",
            ));
        }
        crate::core::error::check_at_least("batch_size", self.batch_size, 1)
    }
    /// The only constructor of [`Saba`].
    pub fn build(self) -> Result<Saba> {
        self.validate()?;
        Ok(Saba { config: self })
    }
}

/// SABA (validated configuration).
#[derive(Clone, Debug)]
pub struct Saba {
    config: SabaConfig,
}

/// One SAGA table: a row of `dim` numbers per sample, and their mean.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SagaTable {
    dim: usize,
    /// n × dim, row-major.
    rows: Vec<f64>,
    /// The mean row.
    #[serde(with = "serde_vector")]
    mean: Vector,
}

impl SagaTable {
    fn zeros(n: usize, dim: usize) -> Self {
        Self {
            dim,
            rows: vec![0.0; n * dim],
            mean: Vector::zeros(dim),
        }
    }
    fn n(&self) -> usize {
        self.rows.len() / self.dim.max(1)
    }
    fn row(&self, i: usize) -> &[f64] {
        &self.rows[i * self.dim..(i + 1) * self.dim]
    }
    /// acc += value − m_i.
    fn accumulate(&self, i: usize, value: &Vector, acc: &mut Vector) {
        axpy(1.0, value.as_slice(), acc.as_mut_slice());
        axpy(-1.0, self.row(i), acc.as_mut_slice());
    }
    /// m̄ += (value − m_i)/n; m_i = value.
    fn store(&mut self, i: usize, value: &[f64]) {
        let n = self.n() as f64;
        let dim = self.dim;
        let row = &mut self.rows[i * dim..(i + 1) * dim];
        for ((m, r), &v) in self
            .mean
            .as_mut_slice()
            .iter_mut()
            .zip(row.iter_mut())
            .zip(value)
        {
            *m += (v - *r) / n;
            *r = v;
        }
    }
    /// out = acc / b + m̄.
    fn estimate(&self, acc: &Vector, b: usize, out: &mut Vector) {
        out.assign(&self.mean);
        out.axpy(1.0 / b as f64, acc);
    }
}

/// The five SAGA memories of SABA.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SabaMemory {
    /// ∇ᵧg_i.
    pub g_grad_y: SagaTable,
    /// ∇²ᵧᵧg_i v.
    pub g_hvp: SagaTable,
    /// ∇²ₓᵧg_i v.
    pub g_cross: SagaTable,
    /// ∇ᵧf_j.
    pub f_grad_y: SagaTable,
    /// ∇ₓf_j.
    pub f_grad_x: SagaTable,
}

/// Transient buffers (not serialized).
#[derive(Clone, Debug, Default)]
struct Work {
    vectors: Scratch,
    xi: Vec<usize>,
    zeta: Vec<usize>,
    /// The SAGA units of the drawn batches: (memory row, offset, length) into `xi` / `zeta`.
    units_g: Vec<(usize, usize, usize)>,
    units_f: Vec<(usize, usize, usize)>,
    /// New values of the units, one row each: g (grad_y | hvp | cross), f (grad_y | grad_x).
    pending_g: Vec<f64>,
    pending_f: Vec<f64>,
}

/// The SAGA units of a drawn batch: each sample (per-sample layout) or the whole block, whose
/// row is its block number start / b (per-batch layout, contiguous blocks).
fn units(
    layout: SabaMemoryLayout,
    batch: &[usize],
    block: usize,
    out: &mut Vec<(usize, usize, usize)>,
) {
    out.clear();
    match layout {
        SabaMemoryLayout::PerSample => {
            out.extend(batch.iter().enumerate().map(|(k, &i)| (i, k, 1)))
        }
        SabaMemoryLayout::PerBatch => out.push((batch[0] / block, 0, batch.len())),
    }
}

/// The sample indices of every memory row: (row, indices).
fn rows(layout: SabaMemoryLayout, n: usize, block: usize) -> Vec<Vec<usize>> {
    match layout {
        SabaMemoryLayout::PerSample => (0..n).map(|i| vec![i]).collect(),
        SabaMemoryLayout::PerBatch => (0..n.div_ceil(block))
            .map(|k| (0..block).map(|j| (k * block + j) % n).collect())
            .collect(),
    }
}

/// State of [`Saba`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SabaState {
    /// Outer iterate.
    #[serde(with = "serde_vector")]
    pub x: Vector,
    /// Inner iterate.
    #[serde(with = "serde_vector")]
    pub y: Vector,
    /// Linear-system iterate v ≈ [∇²ᵧᵧg]⁻¹∇ᵧf.
    #[serde(with = "serde_vector")]
    pub v: Vector,
    /// Iteration counter.
    pub t: u64,
    /// The SAGA tables.
    pub memory: SabaMemory,
    inner: MinibatchSampler,
    outer: MinibatchSampler,
    #[serde(skip)]
    work: Work,
}

impl Solver for Saba {
    type State = SabaState;

    fn name(&self) -> &'static str {
        "saba"
    }

    fn init(&self, problem: &Problem, x: Vector, y: Vector, seed: u64) -> Result<SabaState> {
        use rand::Rng as _;
        let (f, g) = (problem.f(), problem.g());
        let (dx, dy) = problem.dims();
        let (n_g, n_f) = (g.n_samples(), f.n_samples());
        let mut rng = rng_from_seed(seed, 0);
        let bs = self.config.batch_size;
        let mode = self.config.sampling;
        let inner = MinibatchSampler::new(n_g, bs, mode, rng.next_u64())?;
        let outer = MinibatchSampler::new(n_f, bs, mode, rng.next_u64())?;
        // One pass at (x₀, y₀): the gradient memories. The products vanish at v₀ = 0.
        let layout = self.config.memory;
        let rows_g = rows(layout, n_g, inner.batch_size());
        let rows_f = rows(layout, n_f, outer.batch_size());
        let mut memory = SabaMemory {
            g_grad_y: SagaTable::zeros(rows_g.len(), dy),
            g_hvp: SagaTable::zeros(rows_g.len(), dy),
            g_cross: SagaTable::zeros(rows_g.len(), dx),
            f_grad_y: SagaTable::zeros(rows_f.len(), dy),
            f_grad_x: SagaTable::zeros(rows_f.len(), dx),
        };
        let (mut gy, mut gx) = (Vector::zeros(dy), Vector::zeros(dx));
        let fill = self.config.init_memory == SabaInitMemory::FullPass;
        for (row, samples) in rows_g.iter().enumerate().filter(|_| fill) {
            g.grad_y(&x, &y, Batch::Indices(samples), &mut gy);
            memory.g_grad_y.store(row, gy.as_slice());
        }
        for (row, samples) in rows_f.iter().enumerate().filter(|_| fill) {
            f.grad_xy(&x, &y, Batch::Indices(samples), &mut gx, &mut gy);
            memory.f_grad_y.store(row, gy.as_slice());
            memory.f_grad_x.store(row, gx.as_slice());
        }
        Ok(SabaState {
            v: Vector::zeros(dy),
            x,
            y,
            t: 0,
            memory,
            inner,
            outer,
            work: Work::default(),
        })
    }

    fn step(&self, problem: &Problem, s: &mut SabaState) -> Result<Diagnostics> {
        let (f, g) = (problem.f(), problem.g());
        let (dx, dy) = problem.dims();
        let rho = self.config.inner_lr.at(s.t);
        let gamma = self.config.outer_lr.at(s.t);
        let w = &mut s.work;
        let [
            val_y,
            val_hv,
            val_x,
            acc_gy,
            acc_hv,
            acc_cr,
            acc_fy,
            acc_fx,
            d_y,
            d_v,
            d_x,
            tmp_y,
            tmp_x,
        ] = w
            .vectors
            .vectors([dy, dy, dx, dy, dy, dx, dy, dx, dy, dy, dx, dy, dx]);
        s.inner.draw_into(&mut w.xi);
        s.outer.draw_into(&mut w.zeta);
        let layout = self.config.memory;
        units(layout, &w.xi, s.inner.batch_size(), &mut w.units_g);
        units(layout, &w.zeta, s.outer.batch_size(), &mut w.units_f);
        let (b_g, b_f) = (w.units_g.len(), w.units_f.len());
        let m = &mut s.memory;
        for acc in [&mut *acc_gy, &mut *acc_hv, &mut *acc_fy] {
            acc.set_zero();
        }
        acc_cr.set_zero();
        acc_fx.set_zero();

        // New terms of each unit at (y_t, v_t, x_t), accumulated against the old memories.
        let row_g = 2 * dy + dx;
        w.pending_g.resize(b_g * row_g, 0.0);
        for (k, &(i, offset, len)) in w.units_g.iter().enumerate() {
            let unit = Batch::Indices(&w.xi[offset..offset + len]);
            let pending = &mut w.pending_g[k * row_g..(k + 1) * row_g];
            // ∇ᵧgᵢ, ∇²ᵧᵧgᵢ v and ∇²ₓᵧgᵢ v at one point: one fused call.
            g.fused(
                &s.x,
                &s.y,
                Some(&s.v),
                unit,
                Fused {
                    grad_y: Some(val_y),
                    hvp_yy: Some(val_hv),
                    cross_xy: Some(val_x),
                    ..Fused::default()
                },
            );
            m.g_grad_y.accumulate(i, val_y, acc_gy);
            pending[..dy].copy_from_slice(val_y.as_slice());
            m.g_hvp.accumulate(i, val_hv, acc_hv);
            pending[dy..2 * dy].copy_from_slice(val_hv.as_slice());
            m.g_cross.accumulate(i, val_x, acc_cr);
            pending[2 * dy..].copy_from_slice(val_x.as_slice());
        }
        let row_f = dy + dx;
        w.pending_f.resize(b_f * row_f, 0.0);
        for (k, &(j, offset, len)) in w.units_f.iter().enumerate() {
            let unit = Batch::Indices(&w.zeta[offset..offset + len]);
            let pending = &mut w.pending_f[k * row_f..(k + 1) * row_f];
            f.grad_xy(&s.x, &s.y, unit, val_x, val_y);
            m.f_grad_y.accumulate(j, val_y, acc_fy);
            m.f_grad_x.accumulate(j, val_x, acc_fx);
            pending[..dy].copy_from_slice(val_y.as_slice());
            pending[dy..].copy_from_slice(val_x.as_slice());
        }

        // SAGA estimates: δ̂ = (1/b) Σ (δ_i − m_i) + m̄ (old memories).
        m.g_grad_y.estimate(acc_gy, b_g, d_y);
        m.g_hvp.estimate(acc_hv, b_g, d_v);
        m.f_grad_y.estimate(acc_fy, b_f, tmp_y);
        d_v.axpy(-1.0, tmp_y); // D_v = ∇²ᵧᵧg v − ∇ᵧf
        m.f_grad_x.estimate(acc_fx, b_f, d_x);
        m.g_cross.estimate(acc_cr, b_g, tmp_x);
        d_x.axpy(-1.0, tmp_x); // D_x = ∇ₓf − ∇²ₓᵧg v

        // Memory update: m_i ← δ_i(y_t, v_t, x_t).
        for (k, &(i, _, _)) in w.units_g.iter().enumerate() {
            let pending = &w.pending_g[k * row_g..(k + 1) * row_g];
            m.g_grad_y.store(i, &pending[..dy]);
            m.g_hvp.store(i, &pending[dy..2 * dy]);
            m.g_cross.store(i, &pending[2 * dy..]);
        }
        for (k, &(j, _, _)) in w.units_f.iter().enumerate() {
            let pending = &w.pending_f[k * row_f..(k + 1) * row_f];
            m.f_grad_y.store(j, &pending[..dy]);
            m.f_grad_x.store(j, &pending[dy..]);
        }

        // SOBA step on the SAGA directions: y ← y − ρ D̂_y ; v ← v − ρ D̂_v ; x ← x − γ D̂_x.
        s.y.axpy(-rho, d_y);
        s.v.axpy(-rho, d_v);
        s.x.axpy(-gamma, d_x);
        s.t += 1;
        Ok(Diagnostics::new())
    }

    fn iterate<'s>(&self, s: &'s SabaState) -> (&'s Vector, &'s Vector) {
        (&s.x, &s.y)
    }

    fn adjoint<'s>(&self, s: &'s SabaState) -> Option<&'s Vector> {
        Some(&s.v)
    }

    fn iteration(&self, s: &SabaState) -> u64 {
        s.t
    }
}
