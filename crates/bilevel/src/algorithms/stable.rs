//! # STABLE — single-timescale stochastic bilevel optimization with explicit Hessian estimates
//!
//! T. Chen, Y. Sun, Q. Xiao, W. Yin. *A single-timescale method for stochastic bilevel
//! optimization.* AISTATS 2022 (arXiv:2102.04671) [recall: algorithms.md lists the authors as
//! "Chen, Xu, Zhang 2021"; we believe the paper is this one]. algorithms.md §8.4, as in the
//! MRBO/VRBO and LancBiO authors' baseline code.
//!
//! ## Update (iteration k, minibatches ξ on g and ζ on f)
//! Dense estimates $H_{yy} \approx \nabla^2_{yy} g$ (q × q) and $H_{xy} \approx \nabla^2_{xy} g$
//! (p × q) follow a recursive-momentum (STORM) recursion on the same batch at two points:
//! $$ H \leftarrow (1 - \tau_k)\big(H - H(x_{k-1}, y_{k-1}; \xi_k)\big) + H(x_k, y_k; \xi_k)
//!    \qquad (H = H(x_0, y_0; \xi_0) \text{ at } k = 0). $$
//! Then
//! $$ x_{k+1} = x_k - \alpha_k \big(\nabla_x f(x_k, y_k; \zeta) - H_{xy} H_{yy}^{-1} \nabla_y f(x_k, y_k; \zeta)\big), $$
//! $$ y_{k+1} = y_k - \beta_k \nabla_y g(x_k, y_k; \xi) - H_{yy}^{-1} H_{xy}^\top (x_{k+1} - x_k), $$
//! the last term being the first-order correction dy*/dx · (x_{k+1} − x_k) for the x move.
//!
//! The sample blocks $H(x, y; \xi)$ are built column by column from the matrix-free oracles on
//! the basis vectors e_j of y-space: column j of H_yy is ∇²ᵧᵧg e_j, column j of H_xy is
//! ∇²ₓᵧg e_j. That costs 2q products per point: STABLE is only for small dim y (the reason it
//! trails in the MRBO plots); dimensions above `max_dim_y` are rejected at `init` with a
//! configuration error.
//!
//! H_yy⁻¹ is applied by (`inverse`):
//! - `exact`: eigendecomposition of the symmetrised H_yy with the eigenvalues clamped below at
//!   `min_eigenvalue` — STABLE's projection onto {H ⪰ μ I}, which keeps the recursive estimate
//!   invertible;
//! - `neumann`: the series η Σ_{i=0..Q} (I − ηH_yy)^i (dense products), as LancBiO's code does
//!   (Q = 20 there).
//!
//! Unlike the other single-loop solvers, a step allocates (faer's eigendecomposition workspace):
//! the O(q³) dense algebra dominates anyway.
//!
//! ## Oracle calls per iteration (checked by `tests/it/oracle_counts.rs`)
//! | oracle | on g | on f | batch |
//! |--------|------|------|-------|
//! | grad_y | 1 | 1 | ξ / ζ |
//! | grad_x | – | 1 | ζ |
//! | hvp_yy | 2q (q = dim y; q at k = 0) | – | ξ |
//! | cross_xy | 2q (q at k = 0) | – | ξ |
//!
//! ## Parameters
//! | field | paper | default | range |
//! |-------|-------|---------|-------|
//! | `inner_lr` | β_k | `constant 0.1` | schedule |
//! | `outer_lr` | α_k | `constant 0.1` | schedule |
//! | `momentum` | τ_k | `constant 0.5` | schedule, values in (0, 1] |
//! | `inverse` | H_yy⁻¹ | `{ kind = "exact", min_eigenvalue = 0.01 }` | `exact { min_eigenvalue > 0 }`, `neumann { terms, step }` |
//! | `max_dim_y` | — | 200 | ≥ 1 |
//! | `batch_size` | — | 64 | ≥ 1 |
//! | `sampling` | — | `shuffled` | `shuffled`, `with_replacement`, `contiguous` |
//!
//! τ = 0.5 is the baseline codes' value; the steps are ours (the codes tune them per task).
//!
//! ## Example
//! ```
//! use bilevel::prelude::*;
//! let problem = bilevel::problems::quadratic::tiny();
//! let solver = StableConfig { batch_size: 1, ..Default::default() }.build().unwrap();
//! let (x0, y0) = problem.start();
//! let mut state = solver.init(&problem, x0, y0, 0).unwrap();
//! for _ in 0..100 {
//!     solver.step(&problem, &mut state).unwrap();
//! }
//! assert_eq!(state.t, 100);
//! ```
//!
#![doc = include_str!("../../katex-header.html")] // KaTeX: renders the formulas above

use faer::Side;
use serde::{Deserialize, Serialize};

use super::sustain::validate_weight;
use crate::core::error::{Error, check_at_least, check_positive};
use crate::core::linalg::{Matrix, Scratch, gemv, gemv_t, rng_from_seed, serde_vector};
use crate::core::{
    Batch, Diagnostics, MinibatchSampler, Objective, Problem, Result, SamplingMode, Schedule,
    Solver, Vector, VectorExt,
};
use crate::linsolve::NeumannParams;

/// How STABLE applies H_yy⁻¹.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StableInverse {
    /// Eigendecomposition with eigenvalues clamped at `min_eigenvalue`.
    Exact {
        /// μ of the projection onto {H ⪰ μ I}.
        min_eigenvalue: f64,
    },
    /// The truncated Neumann series with dense products (LancBiO's code).
    Neumann(NeumannParams),
}

/// Configuration of STABLE.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StableConfig {
    /// β_k: step of y.
    pub inner_lr: Schedule,
    /// α_k: step of x.
    pub outer_lr: Schedule,
    /// τ_k: momentum weight of the Hessian recursions.
    pub momentum: Schedule,
    /// How H_yy⁻¹ is applied.
    pub inverse: StableInverse,
    /// The largest dim y accepted (dense q × q matrices, 2q products per point).
    pub max_dim_y: usize,
    /// Size of every minibatch.
    pub batch_size: usize,
    /// How minibatches are drawn.
    pub sampling: SamplingMode,
}

impl Default for StableConfig {
    fn default() -> Self {
        Self {
            inner_lr: Schedule::constant(0.1),
            outer_lr: Schedule::constant(0.1),
            momentum: Schedule::constant(0.5),
            inverse: StableInverse::Exact {
                min_eigenvalue: 0.01,
            },
            max_dim_y: 200,
            batch_size: 64,
            sampling: SamplingMode::Shuffled,
        }
    }
}

impl StableConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        self.inner_lr.validate("inner_lr")?;
        self.outer_lr.validate("outer_lr")?;
        validate_weight("momentum", &self.momentum)?;
        match &self.inverse {
            StableInverse::Exact { min_eigenvalue } => {
                check_positive("inverse.min_eigenvalue", *min_eigenvalue)?
            }
            StableInverse::Neumann(p) => p.validate("inverse")?,
        }
        check_at_least("max_dim_y", self.max_dim_y, 1)?;
        check_at_least("batch_size", self.batch_size, 1)
    }

    /// The only constructor of [`Stable`].
    pub fn build(self) -> Result<Stable> {
        self.validate()?;
        Ok(Stable { config: self })
    }
}

/// STABLE (validated configuration).
#[derive(Clone, Debug)]
pub struct Stable {
    config: StableConfig,
}

/// Eigenvectors (q × q, row-major) and clamped eigenvalues of the symmetrised H_yy.
#[derive(Clone, Debug, Default)]
struct Factor {
    vectors: Vec<f64>,
    values: Vec<f64>,
}

/// Transient buffers (not serialized).
#[derive(Clone, Debug, Default)]
struct Work {
    vectors: Scratch,
    batch: Vec<usize>,
    /// Sample blocks at the old point (q × q and p × q, row-major).
    old_yy: Vec<f64>,
    old_xy: Vec<f64>,
    /// Sample blocks at the new point.
    new_yy: Vec<f64>,
    new_xy: Vec<f64>,
    factor: Factor,
    /// The powers of the dense Neumann series.
    power: Vec<f64>,
}

/// State of [`Stable`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StableState {
    /// Outer iterate x_k.
    #[serde(with = "serde_vector")]
    pub x: Vector,
    /// Inner iterate y_k.
    #[serde(with = "serde_vector")]
    pub y: Vector,
    /// x_{k−1}.
    #[serde(with = "serde_vector")]
    pub x_prev: Vector,
    /// y_{k−1}.
    #[serde(with = "serde_vector")]
    pub y_prev: Vector,
    /// H_yy, q × q row-major.
    pub h_yy: Vec<f64>,
    /// H_xy, p × q row-major.
    pub h_xy: Vec<f64>,
    /// Iteration counter.
    pub t: u64,
    inner: MinibatchSampler,
    outer: MinibatchSampler,
    #[serde(skip)]
    work: Work,
}

/// The sample blocks H_yy(x, y; batch) (columns ∇²ᵧᵧg e_j) and H_xy (columns ∇²ₓᵧg e_j), both
/// row-major: q products of each kind.
fn sample_blocks(
    g: &dyn Objective,
    x: &Vector,
    y: &Vector,
    batch: Batch<'_>,
    h_yy: &mut [f64],
    h_xy: &mut [f64],
    basis: &mut Vector,
    col_y: &mut Vector,
    col_x: &mut Vector,
) {
    let (q, p) = (y.nrows(), x.nrows());
    basis.set_zero();
    for j in 0..q {
        basis.as_mut_slice()[j] = 1.0;
        g.hvp_yy(x, y, basis, batch, col_y);
        g.cross_xy(x, y, basis, batch, col_x);
        basis.as_mut_slice()[j] = 0.0;
        for (i, &v) in col_y.as_slice().iter().enumerate() {
            h_yy[i * q + j] = v;
        }
        for (i, &v) in col_x.as_slice().iter().enumerate() {
            h_xy[i * q + j] = v;
        }
    }
    debug_assert_eq!(h_xy.len(), p * q);
}

impl Stable {
    /// Prepares H_yy⁻¹ (the eigendecomposition in `exact` mode); returns the smallest
    /// eigenvalue before clamping (NaN in `neumann` mode).
    fn factor(&self, h_yy: &[f64], q: usize, factor: &mut Factor) -> Result<f64> {
        let StableInverse::Exact { min_eigenvalue } = self.config.inverse else {
            return Ok(f64::NAN);
        };
        let sym = Matrix::from_fn(q, q, |i, j| 0.5 * (h_yy[i * q + j] + h_yy[j * q + i]));
        let eig = sym
            .self_adjoint_eigen(Side::Lower)
            .map_err(|e| Error::Diverged {
                iter: 0,
                what: format!("eigendecomposition of the H_yy estimate failed: {e:?}"),
            })?;
        let (u, s) = (eig.U(), eig.S().column_vector());
        factor.vectors.resize(q * q, 0.0);
        factor.values.resize(q, 0.0);
        let mut smallest = f64::INFINITY;
        for j in 0..q {
            let lambda = s[j];
            smallest = smallest.min(lambda);
            factor.values[j] = lambda.max(min_eigenvalue);
            for i in 0..q {
                factor.vectors[i * q + j] = u[(i, j)];
            }
        }
        Ok(smallest)
    }

    /// out = H_yy⁻¹ rhs (after [`factor`](Self::factor)); `tmp` and `power` are scratch of
    /// length q.
    fn solve(
        &self,
        h_yy: &[f64],
        factor: &Factor,
        rhs: &Vector,
        out: &mut Vector,
        tmp: &mut Vector,
        power: &mut Vec<f64>,
    ) {
        let q = rhs.nrows();
        match self.config.inverse {
            StableInverse::Exact { .. } => {
                // out = U diag(1/λ) Uᵀ rhs
                gemv_t(&factor.vectors, q, q, rhs.as_slice(), tmp.as_mut_slice());
                for (c, &lambda) in tmp.as_mut_slice().iter_mut().zip(&factor.values) {
                    *c /= lambda;
                }
                gemv(&factor.vectors, q, q, tmp.as_slice(), out.as_mut_slice());
            }
            StableInverse::Neumann(p) => {
                // out = η Σ_{i=0..Q} (I − ηH)^i rhs; `power` runs (I − ηH)^i rhs.
                out.assign(rhs);
                power.clear();
                power.extend_from_slice(rhs.as_slice());
                for _ in 0..p.terms {
                    gemv(h_yy, q, q, power, tmp.as_mut_slice());
                    crate::core::linalg::axpy(-p.step, tmp.as_slice(), power);
                    crate::core::linalg::axpy(1.0, power, out.as_mut_slice());
                }
                out.scale(p.step);
            }
        }
    }
}

impl Solver for Stable {
    type State = StableState;

    fn name(&self) -> &'static str {
        "stable"
    }

    fn init(&self, problem: &Problem, x: Vector, y: Vector, seed: u64) -> Result<StableState> {
        use rand::Rng as _;
        let (p, q) = problem.dims();
        if q > self.config.max_dim_y {
            return Err(Error::config(
                "max_dim_y",
                format!(
                    "STABLE keeps dense dim_y × dim_y Hessian estimates and pays 2·dim_y Hessian \
                     products per point; dim_y = {q} exceeds max_dim_y = {} (raise it knowingly, \
                     or use a matrix-free solver)",
                    self.config.max_dim_y
                ),
            ));
        }
        let mut rng = rng_from_seed(seed, 0);
        let bs = self.config.batch_size;
        let mode = self.config.sampling;
        let inner = MinibatchSampler::new(problem.g().n_samples(), bs, mode, rng.next_u64())?;
        let outer = MinibatchSampler::new(problem.f().n_samples(), bs, mode, rng.next_u64())?;
        Ok(StableState {
            x_prev: x.clone(),
            y_prev: y.clone(),
            x,
            y,
            h_yy: vec![0.0; q * q],
            h_xy: vec![0.0; p * q],
            t: 0,
            inner,
            outer,
            work: Work::default(),
        })
    }

    fn step(&self, problem: &Problem, s: &mut StableState) -> Result<Diagnostics> {
        let (f, g) = (problem.f(), problem.g());
        let (p, q) = problem.dims();
        let w = &mut s.work;
        for buf in [&mut w.old_yy, &mut w.new_yy] {
            buf.resize(q * q, 0.0);
        }
        for buf in [&mut w.old_xy, &mut w.new_xy] {
            buf.resize(p * q, 0.0);
        }
        let [basis, col_y, col_x, grad_x, b, grad_y, v, dx_move, z, tmp] =
            w.vectors.vectors([q, q, p, p, q, q, q, p, q, q]);
        let alpha = self.config.outer_lr.at(s.t);
        let beta = self.config.inner_lr.at(s.t);
        let tau = self.config.momentum.at(s.t);

        // H ← (1 − τ)(H − H(x_{k−1}, y_{k−1}; ξ)) + H(x_k, y_k; ξ)   (H = H(x_0, y_0; ξ) at k = 0)
        s.inner.draw_into(&mut w.batch);
        let xi = Batch::Indices(&w.batch);
        sample_blocks(
            g,
            &s.x,
            &s.y,
            xi,
            &mut w.new_yy,
            &mut w.new_xy,
            basis,
            col_y,
            col_x,
        );
        if s.t == 0 {
            s.h_yy.copy_from_slice(&w.new_yy);
            s.h_xy.copy_from_slice(&w.new_xy);
        } else {
            sample_blocks(
                g,
                &s.x_prev,
                &s.y_prev,
                xi,
                &mut w.old_yy,
                &mut w.old_xy,
                basis,
                col_y,
                col_x,
            );
            for (h, (old, new)) in s.h_yy.iter_mut().zip(w.old_yy.iter().zip(&w.new_yy)) {
                *h = (1.0 - tau) * (*h - old) + new;
            }
            for (h, (old, new)) in s.h_xy.iter_mut().zip(w.old_xy.iter().zip(&w.new_xy)) {
                *h = (1.0 - tau) * (*h - old) + new;
            }
        }
        let smallest = self.factor(&s.h_yy, q, &mut w.factor)?;

        // Gradients at (x_k, y_k): ∇ₓf, ∇ᵧf on ζ; ∇ᵧg on ξ.
        f.grad_xy(&s.x, &s.y, Batch::Indices(s.outer.draw()), grad_x, b);
        g.grad_y(&s.x, &s.y, Batch::Indices(&w.batch), grad_y);

        // x_{k+1} = x_k − α_k (∇ₓf − H_xy H_yy⁻¹ ∇ᵧf)
        self.solve(&s.h_yy, &w.factor, b, v, tmp, &mut w.power);
        gemv(&s.h_xy, p, q, v.as_slice(), dx_move.as_mut_slice());
        grad_x.axpy(-1.0, dx_move);
        s.x_prev.assign(&s.x);
        s.y_prev.assign(&s.y);
        s.x.axpy(-alpha, grad_x);

        // y_{k+1} = y_k − β_k ∇ᵧg − H_yy⁻¹ H_xyᵀ (x_{k+1} − x_k)
        dx_move.assign(&s.x);
        dx_move.axpy(-1.0, &s.x_prev);
        gemv_t(&s.h_xy, p, q, dx_move.as_slice(), z.as_mut_slice());
        self.solve(&s.h_yy, &w.factor, z, v, tmp, &mut w.power);
        s.y.axpy(-beta, grad_y);
        s.y.axpy(-1.0, v);

        s.t += 1;
        Ok(Diagnostics::new().with("hyy_min_eigenvalue", smallest))
    }

    fn iterate<'s>(&self, s: &'s StableState) -> (&'s Vector, &'s Vector) {
        (&s.x, &s.y)
    }

    fn iteration(&self, s: &StableState) -> u64 {
        s.t
    }
}
