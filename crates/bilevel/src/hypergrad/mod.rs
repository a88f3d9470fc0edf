//! Hypergradient estimators: ĥ(x) ≈ ∇F(x) = ∇ₓf − ∇²ₓᵧg [∇²ᵧᵧg]⁻¹ ∇ᵧf at y ≈ y*(x).
//!
//! An estimator owns its inner loop (warm starts live in its state). Double-loop algorithms are
//! [`DoubleLoop`](crate::algorithms::double_loop::DoubleLoop)s over an estimator.

pub mod es_jacobian;
pub mod implicit;
pub mod meta_unrolled;
pub mod phi_hat;
pub mod reverse;

pub use es_jacobian::{Direction, EsJacobian, EsJacobianState};
pub use implicit::{Implicit, ImplicitState, LinearSystem};
pub use phi_hat::{NeumannEstimator, PhiHat, PhiHatDraw, PhiHatSamplers, PhiHatWork};
pub use reverse::{Reverse, ReverseState, ReverseWork, reverse_sweep};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::core::{Diagnostics, Problem, Result, Rng, Vector};

/// Estimates ∇F(x), carrying warm starts across outer iterations in its `State`.
pub trait Hypergradient: Send + Sync {
    /// Warm starts and samplers carried across outer iterations.
    type State: Clone + Serialize + DeserializeOwned + Send;
    /// The state at inner start `y0`; samplers are seeded from `rng`.
    fn init(&self, problem: &Problem, y0: Vector, rng: &mut Rng) -> Result<Self::State>;
    /// Writes ĥ(x) into `out` (length dim x).
    fn estimate(
        &self,
        problem: &Problem,
        x: &Vector,
        state: &mut Self::State,
        rng: &mut Rng,
        out: &mut Vector,
    ) -> Result<Diagnostics>;
    /// The current inner iterate y.
    fn inner_iterate<'s>(&self, state: &'s Self::State) -> &'s Vector;
    /// The current linear-system estimate v ≈ [∇²ᵧᵧg]⁻¹∇ᵧf, when kept.
    fn adjoint<'s>(&self, _state: &'s Self::State) -> Option<&'s Vector> {
        None
    }
}
