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
    /// The preconditioned residual M⁻¹ r (used by [`pcg_in_place`] only).
    z: Vector,
}

impl CgWorkspace {
    /// Buffers for systems of dimension `n`.
    pub fn new(n: usize) -> Self {
        Self {
            r: Vector::zeros(n),
            p: Vector::zeros(n),
            ap: Vector::zeros(n),
            z: Vector::zeros(n),
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
    let (b_norm, mut matvecs) = match initial_residual(&mut matvec, b, v, ws) {
        Ok(start) => start,
        Err(solved) => return solved,
    };
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

/// The start of [`cg_in_place`] and [`pcg_in_place`]: r = b − A v into the workspace (one
/// matvec unless `v` is exactly zero). Returns (‖b‖, matvecs), or, when b = 0, the finished
/// solve (v = 0).
fn initial_residual(
    matvec: &mut impl FnMut(&Vector, &mut Vector),
    b: &Vector,
    v: &mut Vector,
    ws: &mut CgWorkspace,
) -> std::result::Result<(f64, usize), SolveInfo> {
    let n = b.nrows();
    assert_eq!(v.nrows(), n, "cg: init length");
    assert_eq!(ws.r.nrows(), n, "cg: workspace length");
    let b_norm = b.norm();
    if b_norm == 0.0 {
        v.set_zero();
        return Err(SolveInfo {
            matvecs: 0,
            rel_residual: 0.0,
            converged: true,
        });
    }
    ws.r.assign(b);
    if v.as_slice().iter().any(|&e| e != 0.0) {
        matvec(v, &mut ws.ap);
        ws.r.axpy(-1.0, &ws.ap);
        return Ok((b_norm, 1));
    }
    Ok((b_norm, 0))
}

/// Preconditioned conjugate gradient from the current `v`, in place: CG on A v = b with the
/// SPD preconditioner M, applied as `precondition(r, z)` (z = M⁻¹ r). With M close to A, each
/// iteration gains several digits. Stops as [`cg_in_place`] does; the residual is the
/// unpreconditioned ‖A v − b‖ / ‖b‖.
pub fn pcg_in_place(
    mut matvec: impl FnMut(&Vector, &mut Vector),
    mut precondition: impl FnMut(&Vector, &mut Vector),
    b: &Vector,
    v: &mut Vector,
    params: &CgParams,
    ws: &mut CgWorkspace,
) -> SolveInfo {
    let (b_norm, mut matvecs) = match initial_residual(&mut matvec, b, v, ws) {
        Ok(start) => start,
        Err(solved) => return solved,
    };
    let tol_sq = (params.rel_tol * b_norm).powi(2);
    let mut rr = ws.r.norm_sq();
    precondition(&ws.r, &mut ws.z);
    ws.p.assign(&ws.z);
    let mut rz = ws.r.dot(&ws.z);
    let mut iters = 0;
    while iters < params.max_iters && rr > tol_sq && rr > 0.0 {
        matvec(&ws.p, &mut ws.ap);
        matvecs += 1;
        iters += 1;
        let curvature = ws.p.dot(&ws.ap);
        if !(curvature > 0.0 && rz > 0.0) {
            break; // A or M not SPD along p (or NaN)
        }
        let alpha = rz / curvature;
        v.axpy(alpha, &ws.p);
        ws.r.axpy(-alpha, &ws.ap);
        rr = ws.r.norm_sq();
        precondition(&ws.r, &mut ws.z);
        let rz_new = ws.r.dot(&ws.z);
        ws.p.scale_add(rz_new / rz, &ws.z);
        rz = rz_new;
    }
    SolveInfo {
        matvecs,
        rel_residual: rr.sqrt() / b_norm,
        converged: rr <= tol_sq,
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

    #[test]
    fn pcg_with_a_nearby_preconditioner_converges_in_a_few_products() {
        // A = diag(1..=50) + a rank-one term; M = the diagonal part scaled by 1.01 (a "stale"
        // Hessian). Plain CG needs dozens of products for 1e-12; PCG with M a handful, and both
        // land on the direct solution.
        let n = 50;
        let mut rng = rng_from_seed(3, 0);
        let u: Vec<f64> = (0..n).map(|_| standard_normal(&mut rng)).collect();
        let a = Matrix::from_fn(n, n, |i, j| {
            (if i == j { (i + 1) as f64 } else { 0.0 }) + 0.01 * u[i] * u[j]
        });
        let b = Vector::from_fn(n, |_| standard_normal(&mut rng));
        let params = CgParams {
            max_iters: 200,
            rel_tol: 1e-12,
        };
        let mut ws = CgWorkspace::new(n);
        let mut plain = Vector::zeros(n);
        let plain_info = cg_in_place(matvec_of(&a), &b, &mut plain, &params, &mut ws);
        let mut v = Vector::zeros(n);
        let info = pcg_in_place(
            matvec_of(&a),
            |r, z| {
                for (i, (zi, ri)) in z.as_mut_slice().iter_mut().zip(r.as_slice()).enumerate() {
                    *zi = ri / (1.01 * (i + 1) as f64);
                }
            },
            &b,
            &mut v,
            &params,
            &mut ws,
        );
        assert!(
            info.converged && plain_info.converged,
            "{info:?} {plain_info:?}"
        );
        assert!(
            info.matvecs * 3 <= plain_info.matvecs,
            "pcg {} products, cg {}",
            info.matvecs,
            plain_info.matvecs
        );
        let direct = faer::prelude::Solve::solve(&a.llt(faer::Side::Lower).unwrap(), &b);
        let mut diff = v.clone();
        diff.axpy(-1.0, &direct);
        assert!(diff.norm() <= 1e-10 * direct.norm(), "{:e}", diff.norm());
    }
}
