//! Neumann-series solvers for A v = b: the summed series SHIA (algorithms.md §1.5.1), the
//! fixed-point (Richardson) iteration it equals, and the randomly truncated series HIA (§1.5.2).

use serde::{Deserialize, Serialize};

use super::SolveInfo;
use crate::core::error::{Result, check_at_least, check_positive};
use crate::core::linalg::{Rng, Vector, VectorExt, uniform_below};

/// Parameters of [`neumann`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NeumannParams {
    /// Q, the number of matvecs (the series has Q + 1 terms).
    pub terms: usize,
    /// η, the series step; needs η < 2 / L (η < 1/L for the bias bound of §1.5.1).
    pub step: f64,
}

impl Default for NeumannParams {
    fn default() -> Self {
        Self {
            terms: 10,
            step: 0.1,
        }
    }
}

impl NeumannParams {
    /// Checks the parameters, naming fields under `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<()> {
        check_positive(&format!("{prefix}.step"), self.step)
    }
}

/// Scratch buffers of the Neumann solvers.
#[derive(Clone, Debug)]
pub struct NeumannWorkspace {
    w: Vector,
    aw: Vector,
}

impl NeumannWorkspace {
    /// Buffers for systems of dimension `n`.
    pub fn new(n: usize) -> Self {
        Self {
            w: Vector::zeros(n),
            aw: Vector::zeros(n),
        }
    }
}

/// Approximates A⁻¹b.
///
/// - `init = None`: the summed series η Σ_{i=0..Q} (I − ηA)^i b of §1.5.1 (SHIA; Q matvecs).
///   Each matvec call may use a fresh minibatch: the closure is called in order j = 1..Q.
/// - `init = Some(v₀)`: Q steps of the fixed-point iteration v ← v − η(Av − b) from v₀ (AID-FP
///   with a warm start). From v₀ = 0 it equals the series with one term fewer.
pub fn neumann(
    matvec: impl FnMut(&Vector, &mut Vector),
    b: &Vector,
    init: Option<&Vector>,
    params: &NeumannParams,
) -> (Vector, SolveInfo) {
    let mut ws = NeumannWorkspace::new(b.nrows());
    let mut v = Vector::zeros(b.nrows());
    let info = match init {
        None => neumann_in_place(matvec, b, &mut v, params, &mut ws),
        Some(v0) => {
            v.assign(v0);
            fixed_point_in_place(matvec, b, &mut v, params, &mut ws)
        }
    };
    (v, info)
}

/// The summed series η Σ_{i=0..Q} (I − ηA)^i b into `out` (§1.5.1, the formula, not the
/// official code's variant that drops the i = 0 term):
/// s ← b; w ← b; repeat Q times { w ← w − η A w; s ← s + w }; out = η s.
pub fn neumann_in_place(
    mut matvec: impl FnMut(&Vector, &mut Vector),
    b: &Vector,
    out: &mut Vector,
    params: &NeumannParams,
    ws: &mut NeumannWorkspace,
) -> SolveInfo {
    out.assign(b);
    ws.w.assign(b);
    for _ in 0..params.terms {
        matvec(&ws.w, &mut ws.aw);
        ws.w.axpy(-params.step, &ws.aw);
        out.axpy(1.0, &ws.w);
    }
    out.scale(params.step);
    SolveInfo {
        matvecs: params.terms,
        rel_residual: f64::NAN,
        converged: true,
    }
}

/// Q steps of v ← v − η (A v − b) from the current `v`, in place.
pub fn fixed_point_in_place(
    mut matvec: impl FnMut(&Vector, &mut Vector),
    b: &Vector,
    v: &mut Vector,
    params: &NeumannParams,
    ws: &mut NeumannWorkspace,
) -> SolveInfo {
    for _ in 0..params.terms {
        matvec(v, &mut ws.aw);
        ws.aw.axpy(-1.0, b);
        v.axpy(-params.step, &ws.aw);
    }
    SolveInfo {
        matvecs: params.terms,
        rel_residual: f64::NAN,
        converged: true,
    }
}

/// Parameters of the randomly truncated series (HIA, §1.5.2).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HiaParams {
    /// N: the truncation P is uniform in {0, …, N − 1}.
    pub max_terms: usize,
    /// η, the series step.
    pub step: f64,
}

impl Default for HiaParams {
    fn default() -> Self {
        Self {
            max_terms: 10,
            step: 0.1,
        }
    }
}

impl HiaParams {
    /// Checks the parameters, naming fields under `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<()> {
        check_at_least(&format!("{prefix}.max_terms"), self.max_terms, 1)?;
        check_positive(&format!("{prefix}.step"), self.step)
    }
    /// Draws the truncation P uniform in {0, …, N − 1}. Draw once and pass the same P to both
    /// points of a joint (two-point) estimate.
    pub fn draw_truncation(&self, rng: &mut Rng) -> usize {
        uniform_below(rng, self.max_terms)
    }
}

/// HIA: w ← b; repeat P times { w ← w − η A w }; return N η w. Conditionally on the batches,
/// E_P\[output\] = η Σ_{i=0..N−1} (I − ηA)^i b.
pub fn neumann_random(
    matvec: impl FnMut(&Vector, &mut Vector),
    b: &Vector,
    params: &HiaParams,
    truncation: usize,
) -> (Vector, SolveInfo) {
    let mut ws = NeumannWorkspace::new(b.nrows());
    let mut out = Vector::zeros(b.nrows());
    let info = neumann_random_in_place(matvec, b, &mut out, params, truncation, &mut ws);
    (out, info)
}

/// In-place form of [`neumann_random`].
pub fn neumann_random_in_place(
    mut matvec: impl FnMut(&Vector, &mut Vector),
    b: &Vector,
    out: &mut Vector,
    params: &HiaParams,
    truncation: usize,
    ws: &mut NeumannWorkspace,
) -> SolveInfo {
    out.assign(b);
    for _ in 0..truncation {
        matvec(out, &mut ws.aw);
        out.axpy(-params.step, &ws.aw);
    }
    out.scale(params.max_terms as f64 * params.step);
    SolveInfo {
        matvecs: truncation,
        rel_residual: f64::NAN,
        converged: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::linalg::{Matrix, from_slice, rng_from_seed};

    fn spd() -> Matrix {
        Matrix::from_fn(3, 3, |i, j| {
            [[2.0, 0.5, 0.0], [0.5, 1.5, 0.2], [0.0, 0.2, 1.0]][i][j]
        })
    }

    fn series(a: &Matrix, b: &Vector, eta: f64, terms: usize) -> Vector {
        // η Σ_{i=0..terms} (I − ηA)^i b, by explicit powers.
        let m = Matrix::identity(3, 3) - a * faer::Scale(eta);
        let mut power = b.clone();
        let mut sum = b.clone();
        for _ in 0..terms {
            power = &m * &power;
            sum += &power;
        }
        sum * faer::Scale(eta)
    }

    #[test]
    fn summed_series_matches_explicit_powers() {
        let a = spd();
        let b = from_slice(&[1.0, -2.0, 0.5]);
        let params = NeumannParams {
            terms: 7,
            step: 0.3,
        };
        let (v, info) = neumann(|p, out| out.assign(&(&a * p)), &b, None, &params);
        let expected = series(&a, &b, 0.3, 7);
        assert!((&v - &expected).norm() < 1e-14);
        assert_eq!(info.matvecs, 7);
    }

    #[test]
    fn long_series_converges_to_the_solution() {
        let a = spd();
        let b = from_slice(&[1.0, -2.0, 0.5]);
        let params = NeumannParams {
            terms: 400,
            step: 0.4,
        };
        let (v, _) = neumann(|p, out| out.assign(&(&a * p)), &b, None, &params);
        assert!((&a * &v - &b).norm() < 1e-12);
        let (w, _) = neumann(
            |p, out| out.assign(&(&a * p)),
            &b,
            Some(&Vector::zeros(3)),
            &params,
        );
        assert!((&a * &w - &b).norm() < 1e-12);
    }

    #[test]
    fn fixed_point_from_zero_is_the_series_with_one_term_fewer() {
        let a = spd();
        let b = from_slice(&[0.3, 0.1, -1.0]);
        let params = NeumannParams {
            terms: 6,
            step: 0.25,
        };
        let (w, _) = neumann(
            |p, out| out.assign(&(&a * p)),
            &b,
            Some(&Vector::zeros(3)),
            &params,
        );
        assert!((&w - &series(&a, &b, 0.25, 5)).norm() < 1e-14);
    }

    #[test]
    fn random_truncation_is_unbiased_for_the_truncated_series() {
        let a = spd();
        let b = from_slice(&[1.0, 0.0, -1.0]);
        let params = HiaParams {
            max_terms: 5,
            step: 0.3,
        };
        // Exact expectation over P uniform in {0..N-1}: average the N outcomes.
        let mut mean = Vector::zeros(3);
        for p in 0..params.max_terms {
            let (v, _) = neumann_random(|q, out| out.assign(&(&a * q)), &b, &params, p);
            mean += &v;
        }
        mean *= faer::Scale(1.0 / params.max_terms as f64);
        assert!((&mean - &series(&a, &b, 0.3, 4)).norm() < 1e-14);
        let mut rng = rng_from_seed(1, 0);
        let p = params.draw_truncation(&mut rng);
        assert!(p < params.max_terms);
    }
}
