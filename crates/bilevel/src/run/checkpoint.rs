//! Checkpoints: (solver config, state, progress) as JSON, written atomically.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::{Counts, Error, Result};

/// Version of the checkpoint layout.
pub const CHECKPOINT_FORMAT: u32 = 1;

/// Everything needed to continue a run bit-exactly.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Layout version ([`CHECKPOINT_FORMAT`]).
    pub format: u32,
    /// The solver's configuration (a `SolverConfig`, with its `kind`).
    pub solver: serde_json::Value,
    /// Outer iterations done.
    pub iter: u64,
    /// Solver time so far (seconds, evaluation excluded).
    pub solver_time_s: f64,
    /// Oracle counts so far.
    pub counts: Counts,
    /// The solver's `State`.
    pub state: serde_json::Value,
    /// Caller context (the CLI stores the problem, budget and output paths here).
    #[serde(default)]
    pub context: serde_json::Value,
}

impl Checkpoint {
    /// Writes the checkpoint atomically (temporary file in the same directory, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec(self).map_err(|e| Error::Checkpoint {
            path: path.to_owned(),
            reason: format!("cannot serialize: {e}"),
        })?;
        write_atomic(path, &bytes)
    }

    /// Reads a checkpoint, with a clear error for a missing, truncated or foreign file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let checkpoint: Checkpoint =
            serde_json::from_slice(&bytes).map_err(|e| Error::Checkpoint {
                path: path.to_owned(),
                reason: format!("not a valid checkpoint: {e}"),
            })?;
        if checkpoint.format != CHECKPOINT_FORMAT {
            return Err(Error::Checkpoint {
                path: path.to_owned(),
                reason: format!(
                    "format {} is not supported (expected {CHECKPOINT_FORMAT})",
                    checkpoint.format
                ),
            });
        }
        Ok(checkpoint)
    }
}

/// Writes `bytes` to `path` atomically: a temporary sibling file is written and synced, then
/// renamed over `path`, so readers see the old content or the new, never half of it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temporary_sibling(path);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// `dir/.name.tmp.<pid>` next to `path`.
pub fn temporary_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    path.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}
