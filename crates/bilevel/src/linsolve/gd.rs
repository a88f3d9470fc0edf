//! Gradient descent on the quadratic ½ vᵀAv − bᵀv (algorithms.md §1.5.4), warm-started from the
//! current v: the linear solver of AmIGO-GD and of AID-FP (from v = 0).
//!
//! One step is v ← v − η (A v − b), the fixed-point (Richardson) iteration of the map
//! v ↦ (I − ηA) v + η b. From v = 0, K steps give η Σ_{i=0..K−1} (I − ηA)^i b, the Neumann
//! series with K terms (so K steps from zero equal [`neumann`](super::neumann::neumann) with
//! K − 1 products).

use serde::{Deserialize, Serialize};

use super::SolveInfo;
use crate::core::error::{Result, check_non_negative, check_positive};
use crate::core::linalg::{Vector, VectorExt};

/// Parameters of [`gd_in_place`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GdParams {
    /// K, the maximum number of steps (one matvec each).
    pub steps: usize,
    /// η, the step; converges for η < 2 / L.
    pub step: f64,
    /// Stop before a step once ‖A v − b‖ ≤ rel_tol · ‖b‖ (0: always make K steps).
    pub rel_tol: f64,
}

impl Default for GdParams {
    fn default() -> Self {
        Self {
            steps: 10,
            step: 0.1,
            rel_tol: 0.0,
        }
    }
}

impl GdParams {
    /// Checks the parameters, naming fields under `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<()> {
        check_positive(&format!("{prefix}.step"), self.step)?;
        check_non_negative(&format!("{prefix}.rel_tol"), self.rel_tol)
    }
}

/// Scratch buffer of [`gd_in_place`].
#[derive(Clone, Debug)]
pub struct GdWorkspace {
    residual: Vector,
}

impl GdWorkspace {
    /// Buffers for systems of dimension `n`.
    pub fn new(n: usize) -> Self {
        Self {
            residual: Vector::zeros(n),
        }
    }
}

/// Up to K steps of v ← v − η (A v − b) from the current `v`, in place. Each step calls `matvec`
/// once (a stochastic caller may use a fresh minibatch per call). The reported residual is the
/// one computed before the last step (the solver never pays a product only to report it), so it
/// is an upper-bound proxy, exact when the solve stops on the tolerance.
pub fn gd_in_place(
    mut matvec: impl FnMut(&Vector, &mut Vector),
    b: &Vector,
    v: &mut Vector,
    params: &GdParams,
    ws: &mut GdWorkspace,
) -> SolveInfo {
    let n = b.nrows();
    assert_eq!(v.nrows(), n, "gd: init length");
    assert_eq!(ws.residual.nrows(), n, "gd: workspace length");
    let b_norm = b.norm().max(f64::MIN_POSITIVE);
    let tol = params.rel_tol * b_norm;
    let mut matvecs = 0;
    let mut rel_residual = f64::NAN;
    let mut converged = false;
    for _ in 0..params.steps {
        // r = A v − b ; v ← v − η r
        matvec(v, &mut ws.residual);
        matvecs += 1;
        ws.residual.axpy(-1.0, b);
        let r = ws.residual.norm();
        rel_residual = r / b_norm;
        if params.rel_tol > 0.0 && r <= tol {
            converged = true;
            break;
        }
        v.axpy(-params.step, &ws.residual);
    }
    SolveInfo {
        matvecs,
        rel_residual,
        converged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::linalg::{Matrix, from_slice};
    use crate::linsolve::{NeumannParams, neumann};

    fn spd() -> Matrix {
        Matrix::from_fn(3, 3, |i, j| {
            [[2.0, 0.5, 0.0], [0.5, 1.5, 0.2], [0.0, 0.2, 1.0]][i][j]
        })
    }

    #[test]
    fn k_steps_from_zero_equal_the_series_with_k_minus_one_terms() {
        let a = spd();
        let b = from_slice(&[1.0, -2.0, 0.5]);
        let params = GdParams {
            steps: 6,
            step: 0.3,
            rel_tol: 0.0,
        };
        let mut v = Vector::zeros(3);
        let info = gd_in_place(
            |p, o| o.assign(&(&a * p)),
            &b,
            &mut v,
            &params,
            &mut GdWorkspace::new(3),
        );
        assert_eq!(info.matvecs, 6);
        let (series, _) = neumann(
            |p, o| o.assign(&(&a * p)),
            &b,
            None,
            &NeumannParams {
                terms: 5,
                step: 0.3,
            },
        );
        assert!((&v - &series).norm() < 1e-14);
    }

    #[test]
    fn stops_on_the_tolerance_and_reaches_the_solution() {
        let a = spd();
        let b = from_slice(&[0.3, 0.1, -1.0]);
        let params = GdParams {
            steps: 10_000,
            step: 0.5,
            rel_tol: 1e-12,
        };
        let mut v = Vector::zeros(3);
        let info = gd_in_place(
            |p, o| o.assign(&(&a * p)),
            &b,
            &mut v,
            &params,
            &mut GdWorkspace::new(3),
        );
        assert!(info.converged);
        assert!(info.matvecs < 10_000);
        assert!((&a * &v - &b).norm() <= 1e-12 * b.norm());
    }
}
