//! Inner solvers: warm-started (stochastic) gradient descent on y ↦ g(x, y).
//!
//! Double-loop methods (AID, ITD, stocBiO, AmIGO, …) run [`descend`] for T steps from the
//! previous y at each outer iteration; unrolled methods (ITD's reverse mode, MAML, UFO-BLO)
//! record the trajectory with [`descend_recording`] for a backward sweep; ESJ replays one
//! minibatch sequence on perturbed trajectories with [`descend_on`]. Every step is one counted
//! ∇ᵧg call on the given batch.

pub mod gd;

pub use gd::{descend, descend_on, descend_recording, descend_recording_on};
