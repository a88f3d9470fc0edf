//! The error type of a bad experiment file, option or output folder.

use std::fmt;

/// A configuration error: the user's input is wrong (a field, a value, a file, a folder). The
/// command line reports it in one line with exit code 2; other errors (I/O, a failed run's
/// bookkeeping) are reported with their causes.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}
