//! The small projected system of Lanczos-type solvers (LancBiO, algorithms.md §3.4, step 5):
//! T s = r with T symmetric tridiagonal of size j (j ≤ m, the restart period).
//!
//! T has diagonal α₁..α_j and off-diagonal β₂..β_j. When the operator A is constant, T = QᵀAQ is
//! symmetric positive definite and the LDLᵀ factorisation (the symmetric Thomas algorithm) needs
//! no pivoting. LancBiO's *dynamic* process builds each column with a different A_k, so T need
//! not stay positive definite: every pivot of LDLᵀ is checked, and on a pivot ≈ 0 the solve falls
//! back to a dense LU factorisation with partial pivoting (O(j³), j ≤ a few hundred). If that
//! also finds T singular, [`solve_tridiagonal`] reports [`SingularTridiagonal`] and the caller
//! decides (LancBiO keeps its previous v and restarts).
//!
//! Everything is in f64: Lanczos without re-orthogonalisation degrades quickly in lower precision
//! (algorithms.md §10).

use crate::core::linalg::axpy;

/// A pivot whose magnitude is at most this fraction of max(|αᵢ|, |βᵢ|) counts as zero. Relative
/// to the size of T, so the test is scale-free; 1e-13 is a few hundred ulps: a smaller pivot
/// would amplify rounding errors of T's entries by more than 1e13.
pub const PIVOT_TOL: f64 = 1e-13;

/// How a tridiagonal system was solved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TridiagonalMethod {
    /// LDLᵀ (symmetric Thomas algorithm), O(j).
    Ldlt,
    /// Dense LU with partial pivoting, O(j³): an LDLᵀ pivot was ≈ 0.
    DenseLu,
}

/// T is singular to working precision (both LDLᵀ and pivoted LU found a pivot ≈ 0), or the
/// solution is not finite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the tridiagonal system is numerically singular")]
pub struct SingularTridiagonal;

/// Reusable buffers of [`solve_tridiagonal`] (no allocation once they have grown to the largest
/// size used).
#[derive(Clone, Debug, Default)]
pub struct TridiagonalWorkspace {
    pivots: Vec<f64>,
    multipliers: Vec<f64>,
    dense: Vec<f64>,
}

/// Solves T s = `rhs` into `out`, where T is symmetric tridiagonal with diagonal `alphas`
/// (length j) and off-diagonal `betas` (length j − 1: `betas[i]` couples rows i and i + 1).
///
/// Tries LDLᵀ first and falls back to dense LU with partial pivoting when a pivot is ≈ 0
/// ([`PIVOT_TOL`] relative to the largest entry of T). Returns the method used, or
/// [`SingularTridiagonal`].
///
/// ```
/// use bilevel::linsolve::lanczos::{solve_tridiagonal, TridiagonalMethod, TridiagonalWorkspace};
/// // T = [[2, 1], [1, 2]], rhs = [3, 3]  ⇒  s = [1, 1].
/// let mut s = [0.0; 2];
/// let method =
///     solve_tridiagonal(&[2.0, 2.0], &[1.0], &[3.0, 3.0], &mut s, &mut TridiagonalWorkspace::default())
///         .unwrap();
/// assert_eq!(method, TridiagonalMethod::Ldlt);
/// assert!((s[0] - 1.0).abs() < 1e-15 && (s[1] - 1.0).abs() < 1e-15);
/// ```
#[track_caller]
pub fn solve_tridiagonal(
    alphas: &[f64],
    betas: &[f64],
    rhs: &[f64],
    out: &mut [f64],
    work: &mut TridiagonalWorkspace,
) -> Result<TridiagonalMethod, SingularTridiagonal> {
    let j = alphas.len();
    assert_eq!(
        betas.len(),
        j.saturating_sub(1),
        "solve_tridiagonal: betas length"
    );
    assert_eq!(rhs.len(), j, "solve_tridiagonal: rhs length");
    assert_eq!(out.len(), j, "solve_tridiagonal: out length");
    if j == 0 {
        return Ok(TridiagonalMethod::Ldlt);
    }
    let scale = alphas
        .iter()
        .chain(betas)
        .fold(0.0_f64, |m, &e| m.max(e.abs()));
    if !(scale.is_finite() && exceeds(scale, 0.0)) || rhs.iter().any(|r| !r.is_finite()) {
        return Err(SingularTridiagonal);
    }
    let tol = PIVOT_TOL * scale;
    if ldlt_solve(alphas, betas, rhs, out, work, tol) {
        return Ok(TridiagonalMethod::Ldlt);
    }
    if dense_lu_solve(alphas, betas, rhs, out, work, tol) {
        return Ok(TridiagonalMethod::DenseLu);
    }
    Err(SingularTridiagonal)
}

/// `value > bound`, false for NaN (a pivot test that rejects NaN pivots).
fn exceeds(value: f64, bound: f64) -> bool {
    value > bound
}

/// LDLᵀ of a symmetric tridiagonal matrix: d₁ = α₁, lᵢ = βᵢ / dᵢ₋₁, dᵢ = αᵢ − lᵢ βᵢ; then
/// L z = r, D w = z, Lᵀ s = w. False on a pivot |dᵢ| ≤ tol or a non-finite result.
fn ldlt_solve(
    alphas: &[f64],
    betas: &[f64],
    rhs: &[f64],
    out: &mut [f64],
    work: &mut TridiagonalWorkspace,
    tol: f64,
) -> bool {
    let j = alphas.len();
    let d = &mut work.pivots;
    let l = &mut work.multipliers;
    d.clear();
    l.clear();
    d.push(alphas[0]);
    l.push(0.0);
    if !exceeds(d[0].abs(), tol) {
        return false;
    }
    for i in 1..j {
        let li = betas[i - 1] / d[i - 1];
        let di = alphas[i] - li * betas[i - 1];
        if !exceeds(di.abs(), tol) {
            return false;
        }
        l.push(li);
        d.push(di);
    }
    // Forward: z_i = r_i − l_i z_{i−1}.
    out[0] = rhs[0];
    for i in 1..j {
        out[i] = rhs[i] - l[i] * out[i - 1];
    }
    // Diagonal and backward: s_j = z_j / d_j; s_i = z_i / d_i − l_{i+1} s_{i+1}.
    out[j - 1] /= d[j - 1];
    for i in (0..j - 1).rev() {
        out[i] = out[i] / d[i] - l[i + 1] * out[i + 1];
    }
    out.iter().all(|s| s.is_finite())
}

/// Dense LU with partial pivoting of the tridiagonal matrix (row-major j × j). False on a pivot
/// ≤ tol or a non-finite result.
fn dense_lu_solve(
    alphas: &[f64],
    betas: &[f64],
    rhs: &[f64],
    out: &mut [f64],
    work: &mut TridiagonalWorkspace,
    tol: f64,
) -> bool {
    let j = alphas.len();
    let a = &mut work.dense;
    a.clear();
    a.resize(j * j, 0.0);
    for i in 0..j {
        a[i * j + i] = alphas[i];
        if i + 1 < j {
            a[i * j + i + 1] = betas[i];
            a[(i + 1) * j + i] = betas[i];
        }
    }
    out.copy_from_slice(rhs);
    for col in 0..j {
        // Partial pivoting: the largest |entry| in this column at or below the diagonal.
        let (pivot_row, pivot_abs) =
            (col..j)
                .map(|r| (r, a[r * j + col].abs()))
                .fold(
                    (col, -1.0),
                    |best, cur| if cur.1 > best.1 { cur } else { best },
                );
        if !exceeds(pivot_abs, tol) {
            return false;
        }
        if pivot_row != col {
            for c in 0..j {
                a.swap(col * j + c, pivot_row * j + c);
            }
            out.swap(col, pivot_row);
        }
        let pivot = a[col * j + col];
        for r in col + 1..j {
            let factor = a[r * j + col] / pivot;
            if factor != 0.0 {
                let (upper, lower) = a.split_at_mut(r * j);
                axpy(
                    -factor,
                    &upper[col * j + col..col * j + j],
                    &mut lower[col..j],
                );
                out[r] -= factor * out[col];
            }
        }
    }
    for i in (0..j).rev() {
        let mut acc = out[i];
        for c in i + 1..j {
            acc -= a[i * j + c] * out[c];
        }
        out[i] = acc / a[i * j + i];
    }
    out.iter().all(|s| s.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::linalg::{rng_from_seed, standard_normal, uniform01};

    /// T s for the tridiagonal (alphas, betas).
    fn apply(alphas: &[f64], betas: &[f64], s: &[f64]) -> Vec<f64> {
        let j = alphas.len();
        (0..j)
            .map(|i| {
                let mut v = alphas[i] * s[i];
                if i > 0 {
                    v += betas[i - 1] * s[i - 1];
                }
                if i + 1 < j {
                    v += betas[i] * s[i + 1];
                }
                v
            })
            .collect()
    }

    fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .fold(0.0, |m, (x, y)| f64::max(m, (x - y).abs()))
    }

    /// Residual tolerance of a well-conditioned solve (condition number ≲ 10², entries O(1)):
    /// a backward-stable solve leaves a residual of a few ulps times ‖T‖‖s‖.
    const SOLVE_TOL: f64 = 1e-12;

    #[test]
    fn ldlt_solves_random_diagonally_dominant_systems() {
        let mut rng = rng_from_seed(5, 0);
        let mut work = TridiagonalWorkspace::default();
        for j in 1..40 {
            let betas: Vec<f64> = (0..j - 1).map(|_| standard_normal(&mut rng)).collect();
            // Diagonal dominance keeps T SPD and well conditioned.
            let alphas: Vec<f64> = (0..j).map(|_| 4.0 + 2.0 * uniform01(&mut rng)).collect();
            let rhs: Vec<f64> = (0..j).map(|_| standard_normal(&mut rng)).collect();
            let mut s = vec![0.0; j];
            let method = solve_tridiagonal(&alphas, &betas, &rhs, &mut s, &mut work).unwrap();
            assert_eq!(method, TridiagonalMethod::Ldlt);
            let r = apply(&alphas, &betas, &s);
            assert!(max_abs_diff(&r, &rhs) < SOLVE_TOL, "j = {j}");
        }
    }

    #[test]
    fn indefinite_systems_are_solved_too() {
        // T = [[1, 2], [2, 1]] is symmetric indefinite (eigenvalues 3 and −1): LDLᵀ still
        // works (pivots 1 and −3).
        let mut s = [0.0; 2];
        let mut work = TridiagonalWorkspace::default();
        let m = solve_tridiagonal(&[1.0, 1.0], &[2.0], &[3.0, 3.0], &mut s, &mut work).unwrap();
        assert_eq!(m, TridiagonalMethod::Ldlt);
        assert!(max_abs_diff(&s, &[1.0, 1.0]) < SOLVE_TOL);
    }

    #[test]
    fn a_zero_pivot_falls_back_to_pivoted_lu() {
        // T = [[0, 1, 0], [1, 0, 1], [0, 1, 1]]: the first LDLᵀ pivot is 0, T is nonsingular
        // (det = −1).
        let (alphas, betas) = ([0.0, 0.0, 1.0], [1.0, 1.0]);
        let expected = [1.0, -2.0, 3.0];
        let rhs = apply(&alphas, &betas, &expected);
        let mut s = [0.0; 3];
        let mut work = TridiagonalWorkspace::default();
        let m = solve_tridiagonal(&alphas, &betas, &rhs, &mut s, &mut work).unwrap();
        assert_eq!(m, TridiagonalMethod::DenseLu);
        assert!(max_abs_diff(&s, &expected) < SOLVE_TOL, "{s:?}");
    }

    #[test]
    fn singular_and_non_finite_systems_are_reported() {
        let mut work = TridiagonalWorkspace::default();
        let mut s = [0.0; 2];
        // [[1, 1], [1, 1]] is singular.
        assert_eq!(
            solve_tridiagonal(&[1.0, 1.0], &[1.0], &[1.0, 2.0], &mut s, &mut work),
            Err(SingularTridiagonal)
        );
        assert_eq!(
            solve_tridiagonal(&[0.0, 0.0], &[0.0], &[1.0, 2.0], &mut s, &mut work),
            Err(SingularTridiagonal)
        );
        assert_eq!(
            solve_tridiagonal(&[f64::NAN, 1.0], &[0.0], &[1.0, 2.0], &mut s, &mut work),
            Err(SingularTridiagonal)
        );
    }

    #[test]
    fn lu_fallback_matches_ldlt_where_both_apply() {
        let mut rng = rng_from_seed(9, 0);
        let j = 12;
        let betas: Vec<f64> = (0..j - 1).map(|_| standard_normal(&mut rng)).collect();
        let alphas: Vec<f64> = (0..j).map(|_| 5.0 + uniform01(&mut rng)).collect();
        let rhs: Vec<f64> = (0..j).map(|_| standard_normal(&mut rng)).collect();
        let mut work = TridiagonalWorkspace::default();
        let (mut a, mut b) = (vec![0.0; j], vec![0.0; j]);
        assert!(ldlt_solve(&alphas, &betas, &rhs, &mut a, &mut work, 0.0));
        assert!(dense_lu_solve(
            &alphas, &betas, &rhs, &mut b, &mut work, 0.0
        ));
        assert!(max_abs_diff(&a, &b) < SOLVE_TOL);
    }
}
