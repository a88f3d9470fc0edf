//! Checkpoints: (solver config, state, progress) as JSON, written atomically, with a checksum
//! and a fingerprint of the problem they belong to.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::core::{Counts, Error, Problem, Result};

/// Version of the checkpoint layout (2: checksum and problem fingerprint).
pub const CHECKPOINT_FORMAT: u32 = 2;

/// What identifies the problem a checkpoint was written for: resuming on another problem (other
/// data, other dimensions) is refused before the state is touched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProblemFingerprint {
    /// The problem's name.
    pub name: String,
    /// dim x.
    pub dim_x: usize,
    /// dim y.
    pub dim_y: usize,
    /// Samples of the outer objective f.
    pub n_outer: usize,
    /// Samples of the inner objective g.
    pub n_inner: usize,
}

impl ProblemFingerprint {
    /// The fingerprint of `problem`.
    pub fn of(problem: &Problem) -> Self {
        let (dim_x, dim_y) = problem.dims();
        Self {
            name: problem.name().to_owned(),
            dim_x,
            dim_y,
            n_outer: problem.f().n_samples(),
            n_inner: problem.g().n_samples(),
        }
    }
}

impl std::fmt::Display for ProblemFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` (dim x {}, dim y {}, {} outer and {} inner samples)",
            self.name, self.dim_x, self.dim_y, self.n_outer, self.n_inner
        )
    }
}

/// Everything needed to continue a run bit-exactly.
///
/// Written by the [`Runner`](super::Runner) every `checkpoint_every` iterations (see the example
/// there for a run resumed from one). A checkpoint that was edited, corrupted or written for
/// another problem is refused with a reason:
///
/// ```
/// use bilevel::prelude::*;
/// use bilevel::run::Checkpoint;
///
/// let dir = std::env::temp_dir().join(format!("bilevel-checkpoint-doc-{}", std::process::id()));
/// let path = dir.join("run.ckpt");
/// let problem = bilevel::problems::quadratic::tiny();
/// let (x0, y0) = problem.start();
/// let config = SolverConfig::AidCg(AidCgConfig::default());
/// let options = RunOptions { max_iters: Some(10), ..Default::default() };
/// Runner::new(options)
///     .checkpoint_to(&path, 5, bilevel::serde_json::Value::Null)
///     .run_config(&config, &problem, x0, y0, 0)?;
/// let checkpoint = Checkpoint::load(&path)?;
/// // The last one written, at iteration 10 (the library keeps it; the CLI deletes it once the
/// // run is complete).
/// assert_eq!((checkpoint.iter, checkpoint.solver["kind"].as_str()), (10, Some("aid_cg")));
///
/// // One changed byte and the checksum no longer matches.
/// let text = std::fs::read_to_string(&path).unwrap().replacen("\"iter\":10", "\"iter\":11", 1);
/// std::fs::write(&path, text).unwrap();
/// let err = Checkpoint::load(&path).unwrap_err().to_string();
/// assert!(err.contains("checksum"), "{err}");
///
/// // Another problem: refused before the state is touched.
/// let other = bilevel::problems::quadratic::QuadraticConfig::default().build()?;
/// assert!(checkpoint.check_problem(&other, &path).is_err());
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), bilevel::Error>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Layout version ([`CHECKPOINT_FORMAT`]).
    pub format: u32,
    /// The solver's configuration (a `SolverConfig`, with its `kind`).
    pub solver: serde_json::Value,
    /// The problem it was written for.
    pub problem: ProblemFingerprint,
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
    /// SHA-256 (hex) of the checkpoint's JSON with this field empty ([`Checkpoint::seal`]).
    #[serde(default)]
    pub checksum: String,
}

impl Checkpoint {
    /// The SHA-256 of the checkpoint's canonical JSON with an empty `checksum`.
    fn digest(&self) -> String {
        let mut unsealed = self.clone();
        unsealed.checksum.clear();
        let bytes = serde_json::to_vec(&unsealed).expect("invariant: checkpoints serialize");
        let digest = Sha256::digest(&bytes);
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Sets the checksum over the current contents (done by [`save`](Self::save)).
    pub fn seal(&mut self) {
        self.checksum = self.digest();
    }

    /// Checks the checksum and the plain invariants (progress that can be real); names
    /// `path` in the error. A checkpoint edited by hand, truncated or corrupted on disk fails.
    pub fn verify(&self, path: &Path) -> Result<()> {
        let refuse = |reason: String| Error::Checkpoint {
            path: path.to_owned(),
            reason,
        };
        if self.format != CHECKPOINT_FORMAT {
            return Err(refuse(format!(
                "format {} is not supported (expected {CHECKPOINT_FORMAT}); start the run again",
                self.format
            )));
        }
        if self.checksum.is_empty() {
            return Err(refuse("it has no checksum".into()));
        }
        if self.checksum != self.digest() {
            return Err(refuse(
                "the checksum does not match its contents (edited or corrupted); delete it to \
                 start the run again"
                    .into(),
            ));
        }
        if !(self.solver_time_s.is_finite() && self.solver_time_s >= 0.0) {
            return Err(refuse(format!(
                "solver time {} s is not a finite non-negative number",
                self.solver_time_s
            )));
        }
        Ok(())
    }

    /// Refuses the checkpoint unless it was written for a problem with `problem`'s fingerprint.
    pub fn check_problem(&self, problem: &Problem, path: &Path) -> Result<()> {
        let here = ProblemFingerprint::of(problem);
        if self.problem != here {
            return Err(Error::Checkpoint {
                path: path.to_owned(),
                reason: format!(
                    "it was written for problem {}, not for {here}",
                    self.problem
                ),
            });
        }
        Ok(())
    }

    /// Seals and writes the checkpoint atomically (temporary file in the same directory, then
    /// rename), creating the directory if needed.
    pub fn save(&mut self, path: &Path) -> Result<()> {
        self.seal();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let bytes = serde_json::to_vec(self).map_err(|e| Error::Checkpoint {
            path: path.to_owned(),
            reason: format!("cannot serialize: {e}"),
        })?;
        write_atomic(path, &bytes)
    }

    /// Reads and verifies a checkpoint ([`verify`](Self::verify)), with a clear error for a
    /// missing, truncated, corrupted or foreign file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let checkpoint: Checkpoint =
            serde_json::from_slice(&bytes).map_err(|e| Error::Checkpoint {
                path: path.to_owned(),
                reason: format!("not a valid checkpoint: {e}"),
            })?;
        checkpoint.verify(path)?;
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
