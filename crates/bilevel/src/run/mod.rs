//! Measurement: the [`Runner`] loop (budgets, timing, evaluation, divergence), observers
//! ([`JsonlTrace`], [`InMemory`], [`Progress`]) and checkpoints.

pub mod checkpoint;
pub mod observer;
pub mod runner;

pub use checkpoint::{Checkpoint, write_atomic};
pub use observer::{InMemory, JsonlTrace, Observer, Progress};
pub use runner::{Record, RunOptions, RunStatus, RunSummary, Runner, StopAt, StopReason};
