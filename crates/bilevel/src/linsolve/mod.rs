//! Matrix-free linear solvers for A v = b with A = ∇²ᵧᵧg (SPD), given only v ↦ A v.
//!
//! Each solver has the spec form `fn(matvec, b, init, &Params) -> (Vector, SolveInfo)` and an
//! allocation-free `_in_place` form for hot loops. `matvec(p, out)` writes A p into `out`.

pub mod cg;
pub mod gd;
pub mod lanczos;
pub mod neumann;
pub mod recycle;

pub use cg::{CgParams, CgWorkspace, cg, cg_in_place, pcg_in_place};
pub use gd::{GdParams, GdWorkspace, gd_in_place};
pub use lanczos::{
    SingularTridiagonal, TridiagonalMethod, TridiagonalWorkspace, solve_tridiagonal,
};
pub use neumann::{
    HiaParams, NeumannParams, NeumannWorkspace, fixed_point_in_place, neumann, neumann_in_place,
    neumann_random, neumann_random_in_place,
};
pub use recycle::CurvaturePairs;

use serde::{Deserialize, Serialize};

/// What a linear solve achieved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SolveInfo {
    /// Matrix-vector products performed.
    pub matvecs: usize,
    /// ‖A v − b‖ / ‖b‖ at exit, when the solver tracks it (NaN otherwise).
    pub rel_residual: f64,
    /// Whether the requested tolerance was met.
    pub converged: bool,
}
