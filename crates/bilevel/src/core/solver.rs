//! The [`Solver`] trait and per-step [`Diagnostics`].

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::Result;
use super::linalg::Vector;
use super::problem::Problem;

/// One bilevel algorithm.
///
/// `Self` is validated, immutable configuration (built only through `XConfig::build`).
/// Everything that changes between iterations (x, y, v, momentum buffers, warm starts, RNG,
/// samplers, scratch buffers) lives in `State`: a checkpoint is (config, state), and resuming from
/// it is bit-exact.
pub trait Solver: Send + Sync {
    /// Everything that changes between iterations.
    type State: Clone + Serialize + DeserializeOwned + Send;
    /// Stable id shared by file name, config `kind` and trace label (`"soba"`).
    fn name(&self) -> &'static str;
    /// The state at (x₀, y₀). All randomness derives from `seed`.
    fn init(&self, problem: &Problem, x0: Vector, y0: Vector, seed: u64) -> Result<Self::State>;
    /// One outer iteration.
    fn step(&self, problem: &Problem, state: &mut Self::State) -> Result<Diagnostics>;
    /// The current (x, y), read by the runner for metrics.
    fn iterate<'s>(&self, state: &'s Self::State) -> (&'s Vector, &'s Vector);
    /// The current estimate of v = [∇²ᵧᵧg]⁻¹∇ᵧf (in the +v convention), when the algorithm
    /// keeps one; the runner reports its linear-system residual.
    fn adjoint<'s>(&self, _state: &'s Self::State) -> Option<&'s Vector> {
        None
    }
    /// The outer iteration counter stored in the state.
    fn iteration(&self, state: &Self::State) -> u64;
}

/// Capacity of [`Diagnostics`].
pub const MAX_DIAGNOSTICS: usize = 8;

/// Named per-step scalars, e.g. `cg_iters = 7`, `cg_rel_residual = 3e-9`. A fixed-capacity list
/// (no allocation on the hot path) that serializes as a JSON object.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Diagnostics {
    entries: [(&'static str, f64); MAX_DIAGNOSTICS],
    len: usize,
}

impl Diagnostics {
    /// No entries.
    pub const fn new() -> Self {
        Self {
            entries: [("", 0.0); MAX_DIAGNOSTICS],
            len: 0,
        }
    }
    /// Sets `name` to `value` (overwrites an existing entry; silently drops entries past the
    /// capacity, which is a programming error caught by `debug_assert`).
    pub fn set(&mut self, name: &'static str, value: f64) {
        if let Some(e) = self.entries[..self.len].iter_mut().find(|e| e.0 == name) {
            e.1 = value;
            return;
        }
        debug_assert!(self.len < MAX_DIAGNOSTICS, "too many diagnostics");
        if self.len < MAX_DIAGNOSTICS {
            self.entries[self.len] = (name, value);
            self.len += 1;
        }
    }
    /// Builder form of [`set`](Self::set).
    pub fn with(mut self, name: &'static str, value: f64) -> Self {
        self.set(name, value);
        self
    }
    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.iter().find(|e| e.0 == name).map(|e| e.1)
    }
    /// The entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        self.entries[..self.len].iter().copied()
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Serialize for Diagnostics {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut sorted: [(&str, f64); MAX_DIAGNOSTICS] = [("", 0.0); MAX_DIAGNOSTICS];
        sorted[..self.len].copy_from_slice(&self.entries[..self.len]);
        sorted[..self.len].sort_by(|a, b| a.0.cmp(b.0));
        let mut map = s.serialize_map(Some(self.len))?;
        for (k, v) in &sorted[..self.len] {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}
