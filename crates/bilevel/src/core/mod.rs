//! Core types: vectors, the oracle interface, problems, solvers, schedules, samplers, errors.

pub mod error;
pub mod linalg;
pub mod objective;
pub mod problem;
pub mod sampler;
pub mod schedule;
pub mod solver;

pub use error::{Error, Result};
pub use linalg::{Matrix, Rng, Vector, VectorExt};
pub use objective::{Batch, Fused, Objective};
pub use problem::{
    Counts, HeadRange, Metrics, OracleCounts, Problem, Reference, ReferencePoint, TaskMetrics,
    UnrolledSpec,
};
pub use sampler::{MinibatchSampler, OracleSamplers, SamplingMode};
pub use schedule::Schedule;
pub use solver::{Diagnostics, Solver};
