//! Core types: the vector, the oracle interface, problems, solvers, schedules, samplers, errors.
//!
//! - [`Vector`] (`faer::Col<f64>`, with [`VectorExt`] for slices, dots and axpys) is the one
//!   vector type; [`Matrix`] appears only in references and small dense subproblems.
//! - [`Objective`] is a smooth h(x, y) = (1/n) Σᵢ hᵢ(x, y) seen through oracles (value, ∇ₓ, ∇ᵧ,
//!   ∇²ᵧᵧ·v, ∇²ₓᵧ·v, ∇²ᵧₓ·u, and fused combinations) on an explicit minibatch ([`Batch`]: the
//!   full data or a list of sample indices). Outputs go into caller-owned buffers.
//! - [`Problem`] pairs the outer f and the inner g behind oracle counters ([`Counts`]), with an
//!   optional exact [`Reference`] (F(x), ∇F(x), y*(x)) and task metrics; its
//!   [`metrics`](Problem::metrics) use the uncounted objectives.
//! - [`Solver`] is one algorithm: immutable configuration, and every changing quantity in one
//!   serializable `State` (a checkpoint is (config, state); resuming is bit-exact). Solvers draw
//!   their minibatches from seeded [`MinibatchSampler`]s and follow step-size [`Schedule`]s.
//! - [`Error`] is the one error type: configuration, dimensions, data files, divergence,
//!   checkpoints. Nothing in the library panics on bad input.
//! - [`warnings`] collects what a run should report without failing (a batch size clipped to
//!   the data).

pub mod error;
pub mod linalg;
pub mod objective;
pub mod problem;
pub mod sampler;
pub mod schedule;
pub mod solver;
pub mod warnings;

pub use error::{Error, Result};
pub use linalg::{Matrix, Rng, Vector, VectorExt};
pub use objective::{Batch, BatchSamples, Fused, HessianOperator, Objective};
pub use problem::{
    Counts, HeadRange, Metrics, OracleCounts, Problem, Reference, ReferencePoint, TaskMetrics,
    UnrolledSpec,
};
pub use sampler::{MinibatchSampler, OracleSamplers, SamplingMode};
pub use schedule::Schedule;
pub use solver::{Diagnostics, Solver};
