//! Conjugate gradient on A v = b (jaxopt's `solve_cg(matvec, b, init)`).

use serde::{Deserialize, Serialize};

use super::SolveInfo;
use crate::core::error::{Result, check_at_least, check_non_negative};
use crate::core::linalg::{Vector, VectorExt};

/// Parameters of [`cg`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CgParams {
    /// Maximum CG iterations (one matvec each).
    pub max_iters: usize,
    /// Stop when ‖A v − b‖ ≤ rel_tol · ‖b‖ (0 runs exactly `max_iters` iterations unless the
    /// residual vanishes).
    pub rel_tol: f64,
}

impl Default for CgParams {
    fn default() -> Self {
        Self {
            max_iters: 10,
            rel_tol: 1e-10,
        }
    }
}

impl CgParams {
    /// Checks the parameters, naming fields under `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<()> {
        check_at_least(&format!("{prefix}.max_iters"), self.max_iters, 1)?;
        check_non_negative(&format!("{prefix}.rel_tol"), self.rel_tol)
    }
}

/// Scratch buffers of [`cg_in_place`].
#[derive(Clone, Debug)]
pub struct CgWorkspace {
    r: Vector,
    p: Vector,
    ap: Vector,
}

impl CgWorkspace {
    /// Buffers for systems of dimension `n`.
    pub fn new(n: usize) -> Self {
        Self {
            r: Vector::zeros(n),
            p: Vector::zeros(n),
            ap: Vector::zeros(n),
        }
    }
}

/// Solves A v = b by conjugate gradient from `init` (zero if `None`).
pub fn cg(
    matvec: impl FnMut(&Vector, &mut Vector),
    b: &Vector,
    init: Option<&Vector>,
    params: &CgParams,
) -> (Vector, SolveInfo) {
    let mut v = init.cloned().unwrap_or_else(|| Vector::zeros(b.nrows()));
    let mut ws = CgWorkspace::new(b.nrows());
    let info = cg_in_place(matvec, b, &mut v, params, &mut ws);
    (v, info)
}

/// Conjugate gradient from the current `v` (warm start), in place. The initial residual costs one
/// matvec unless `v` is exactly zero. Stops early on the tolerance, on a vanishing residual, or on
/// non-positive curvature (A not SPD along the search direction).
pub fn cg_in_place(
    mut matvec: impl FnMut(&Vector, &mut Vector),
    b: &Vector,
    v: &mut Vector,
    params: &CgParams,
    ws: &mut CgWorkspace,
) -> SolveInfo {
    let n = b.nrows();
    assert_eq!(v.nrows(), n, "cg: init length");
    assert_eq!(ws.r.nrows(), n, "cg: workspace length");
    let b_norm = b.norm();
    let mut matvecs = 0;
    if b_norm == 0.0 {
        v.set_zero();
        return SolveInfo {
            matvecs,
            rel_residual: 0.0,
            converged: true,
        };
    }
    // r = b − A v
    ws.r.assign(b);
    if v.as_slice().iter().any(|&e| e != 0.0) {
        matvec(v, &mut ws.ap);
        matvecs += 1;
        ws.r.axpy(-1.0, &ws.ap);
    }
    ws.p.assign(&ws.r);
    let mut rs = ws.r.norm_sq();
    let tol_sq = (params.rel_tol * b_norm).powi(2);
    let mut iters = 0;
    while iters < params.max_iters && rs > tol_sq && rs > 0.0 {
        matvec(&ws.p, &mut ws.ap);
        matvecs += 1;
        iters += 1;
        let curvature = ws.p.dot(&ws.ap);
        if curvature.is_nan() || curvature <= 0.0 {
            break;
        }
        let alpha = rs / curvature;
        v.axpy(alpha, &ws.p);
        ws.r.axpy(-alpha, &ws.ap);
        let rs_new = ws.r.norm_sq();
        ws.p.scale_add(rs_new / rs, &ws.r);
        rs = rs_new;
    }
    let rel_residual = rs.sqrt() / b_norm;
    SolveInfo {
        matvecs,
        rel_residual,
        converged: rs <= tol_sq,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::linalg::{Matrix, from_slice, rng_from_seed, standard_normal};

    fn matvec_of(a: &Matrix) -> impl FnMut(&Vector, &mut Vector) + '_ {
        move |p, out| {
            let prod = a * p;
            out.assign(&prod);
        }
    }

    #[test]
    fn solves_a_small_spd_system_exactly() {
        let a = Matrix::from_fn(3, 3, |i, j| {
            [[4.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 2.0]][i][j]
        });
        let b = from_slice(&[1.0, 2.0, 3.0]);
        let params = CgParams {
            max_iters: 3,
            rel_tol: 0.0,
        };
        let (v, info) = cg(matvec_of(&a), &b, None, &params);
        let r = &a * &v - &b;
        assert!(r.norm() < 1e-12, "residual {}", r.norm());
        assert_eq!(info.matvecs, 3);
    }

    #[test]
    fn warm_start_at_the_solution_costs_one_matvec() {
        let a = Matrix::from_fn(2, 2, |i, j| if i == j { 2.0 } else { 0.0 });
        let b = from_slice(&[2.0, 4.0]);
        let init = from_slice(&[1.0, 2.0]);
        let (v, info) = cg(matvec_of(&a), &b, Some(&init), &CgParams::default());
        assert_eq!(v.as_slice(), &[1.0, 2.0]);
        assert_eq!(info.matvecs, 1);
        assert!(info.converged);
    }

    #[test]
    fn random_spd_systems_reach_tolerance() {
        let mut rng = rng_from_seed(5, 0);
        for n in [5, 20, 60] {
            let g = Matrix::from_fn(n, n, |_, _| standard_normal(&mut rng));
            let a = &g * g.transpose() + Matrix::identity(n, n) * faer::Scale(0.5);
            let b = Vector::from_fn(n, |_| standard_normal(&mut rng));
            let params = CgParams {
                max_iters: 10 * n,
                rel_tol: 1e-10,
            };
            let (v, info) = cg(matvec_of(&a), &b, None, &params);
            assert!(info.converged, "n={n}: {info:?}");
            let r = &a * &v - &b;
            assert!(r.norm() <= 1e-9 * b.norm(), "n={n}");
        }
    }
}
