//! The one error type of the library.

use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure the library reports. Oracles and vector math are infallible (shapes are checked
/// once at the boundary); these are the fallible boundaries: configuration, data, numerics that
/// ran away, and I/O.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of its valid range.
    #[error("invalid config field `{field}`: {reason}")]
    InvalidConfig {
        /// The offending field, dotted for nested fields (`cg.max_iters`).
        field: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Two objects disagree on a dimension.
    #[error("dimension mismatch in {what}: expected {expected}, found {found}")]
    DimensionMismatch {
        /// What was being checked.
        what: String,
        /// The dimension required.
        expected: usize,
        /// The dimension given.
        found: usize,
    },
    /// The iterates or the objective became non-finite or exploded.
    #[error("diverged at iteration {iter}: {what}")]
    Diverged {
        /// The outer iteration at which divergence was detected.
        iter: u64,
        /// What went wrong (`"x is not finite"`, …).
        what: String,
    },
    /// An inner linear solve or reference solve failed to reach its tolerance.
    #[error("{what} did not converge: {iters} iterations, relative residual {rel_residual:.3e}")]
    NotConverged {
        /// Which solve.
        what: String,
        /// Iterations performed.
        iters: usize,
        /// Final relative residual.
        rel_residual: f64,
    },
    /// A malformed data file.
    #[error("{path}: {location}: {reason}")]
    Data {
        /// The file.
        path: String,
        /// Where in it (`line 12`, `byte offset 16`, …).
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// A checkpoint could not be written, read or applied.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// An operation the problem or solver does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An I/O failure on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Shorthand for [`Error::InvalidConfig`].
    pub fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            field: field.into(),
            reason: reason.into(),
        }
    }
    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Checks that `value` is finite and positive, naming `field` otherwise.
pub fn check_positive(field: &str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(Error::config(
            field,
            format!("must be finite and > 0, got {value}"),
        ))
    }
}

/// Checks that `value` is finite and non-negative, naming `field` otherwise.
pub fn check_non_negative(field: &str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(Error::config(
            field,
            format!("must be finite and >= 0, got {value}"),
        ))
    }
}

/// Checks that an integer count is at least `min`, naming `field` otherwise.
pub fn check_at_least(field: &str, value: usize, min: usize) -> Result<()> {
    if value >= min {
        Ok(())
    } else {
        Err(Error::config(
            field,
            format!("must be >= {min}, got {value}"),
        ))
    }
}

/// Checks that `value` lies in `[lo, hi]`, naming `field` otherwise.
pub fn check_in_range(field: &str, value: f64, lo: f64, hi: f64) -> Result<()> {
    if value.is_finite() && (lo..=hi).contains(&value) {
        Ok(())
    } else {
        Err(Error::config(
            field,
            format!("must be in [{lo}, {hi}], got {value}"),
        ))
    }
}
