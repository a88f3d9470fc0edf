//! The output folder of an experiment: where traces, checkpoints, the summary and the copies of
//! the experiment file and its command-line budget live. Every other module reads and writes
//! through these paths; this module depends on nothing else.

use std::path::{Path, PathBuf};

/// The copy of the experiment file kept in an output directory.
pub const EXPERIMENT_COPY: &str = "experiment.toml";

/// The command-line budget of a grid (`--max-iters`, `--max-seconds`), kept next to the
/// experiment copy so that `--resume` continues under the same budget.
pub const BUDGET_OVERRIDE: &str = "budget_override.json";

/// Output layout of an experiment directory.
pub struct Layout {
    /// The directory.
    pub root: PathBuf,
}

impl Layout {
    /// The layout under `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }
    /// `traces/`.
    pub fn traces(&self) -> PathBuf {
        self.root.join("traces")
    }
    /// `checkpoints/`.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    /// The trace of run `id`.
    pub fn trace(&self, id: &str) -> PathBuf {
        self.traces().join(format!("{id}.jsonl"))
    }
    /// The checkpoint of run `id`.
    pub fn checkpoint(&self, id: &str) -> PathBuf {
        self.checkpoints().join(format!("{id}.json"))
    }
    /// `summary.csv`.
    pub fn summary(&self) -> PathBuf {
        self.root.join("summary.csv")
    }
}
