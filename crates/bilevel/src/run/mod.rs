//! Measurement: the [`Runner`] loop, observers and checkpoints.
//!
//! A run is `init` then `step`s until a budget of [`RunOptions`] is spent (iterations, solver
//! seconds, oracle calls, samples or drawn rows), a quality target is met (`tol` on ‖∇F‖²,
//! `stop_at` on any metric), or it diverges. Only `init` and `step` are timed; metrics are
//! evaluated between steps from the uncounted objectives (every `eval_every` iterations, and by
//! solver time, samples or draws), so evaluation changes neither the iterates, the counts nor
//! the time. Each evaluation is a [`Record`], shown to every [`Observer`] with the iterate it
//! describes ([`Iterate`]): a [`JsonlTrace`] on disk (written atomically), an [`InMemory`]
//! list, a [`Progress`] bar, or a closure. The run ends with a [`RunSummary`] (status, stop
//! reason, counts, final metrics, warnings); [`Runner::solve_config`] and
//! [`solve`](crate::solve) also return the final iterate ([`Solution`]).
//!
//! Checkpoints ([`Checkpoint`]) hold the solver's configuration and state, the counts and the
//! problem's fingerprint, with a checksum; they are written atomically and resuming from one is
//! bit-exact (see the example on [`Runner`]). A [`LiveStatus`] lets another thread follow a run.

pub mod checkpoint;
pub mod observer;
pub mod runner;
pub mod threads;

pub use checkpoint::{Checkpoint, write_atomic};
pub use observer::{InMemory, Iterate, JsonlTrace, Observer, Progress};
pub use runner::{
    CheckpointTarget, LiveStatus, Record, RunOptions, RunStatus, RunSummary, Runner, Solution,
    StopAt, StopReason,
};
