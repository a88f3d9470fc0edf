//! Library errors as Python exceptions: bad arguments are `ValueError`, a missing file
//! `FileNotFoundError`, other I/O `OSError`, the rest `RuntimeError`.

use bilevel::Error;
use pyo3::PyErr;
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyRuntimeError, PyValueError};

/// The Python exception for a library error.
pub fn to_py(error: Error) -> PyErr {
    let text = error.to_string();
    match &error {
        Error::InvalidConfig { .. }
        | Error::DimensionMismatch { .. }
        | Error::Data { .. }
        | Error::Checkpoint { .. }
        | Error::Unsupported(_) => PyValueError::new_err(text),
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(text)
        }
        Error::Io { .. } => PyOSError::new_err(text),
        _ => PyRuntimeError::new_err(text),
    }
}

/// The Python exception for an experiment-engine error (its messages name the file and field).
pub fn engine_to_py(error: anyhow::Error) -> PyErr {
    let text = format!("{error:#}");
    match error.downcast_ref::<std::io::Error>() {
        Some(io) if io.kind() == std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(text),
        Some(_) => PyOSError::new_err(text),
        None if error
            .downcast_ref::<bilevel_experiment::ConfigError>()
            .is_some() =>
        {
            PyValueError::new_err(text)
        }
        None => match error.downcast::<Error>() {
            Ok(e) => to_py(e),
            Err(_) => PyRuntimeError::new_err(text),
        },
    }
}
