//! Inner solvers: warm-started (stochastic) gradient descent on y ↦ g(x, y).

pub mod gd;

pub use gd::{descend, descend_on, descend_recording, descend_recording_on};
