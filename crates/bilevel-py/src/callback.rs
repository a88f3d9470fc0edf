//! An [`Objective`] whose oracles are methods of a Python object (numpy arrays in, arrays out).
//!
//! Required methods: `grad_x(x, y, batch)` and `grad_y(x, y, batch)`, returning arrays of
//! length dim x and dim y. Optional: `value(x, y, batch)` (required for the outer objective,
//! whose value is reported), `hvp_yy(x, y, v, batch)`, `cross_xy(x, y, v, batch)`,
//! `cross_yx(x, y, u, batch)` and `fused(x, y, v, batch, wanted)` (a dict with the names in
//! `wanted`). `batch` is an `int64` index array, or `None` for the full objective. A missing
//! product falls back to central differences of the gradients, counted as the two gradient
//! calls it makes.
//!
//! An exception in a callback cannot unwind through the solver: the first one is kept, the
//! outputs of that call and of every later call are NaN, the run is interrupted before its
//! next iteration, and the exception is raised when the run returns.

use std::sync::{Arc, Mutex};

use bilevel::core::linalg::fd;
use bilevel::core::{Batch, Fused, Objective, Vector, VectorExt};
use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

/// The first exception raised by any callback of a problem (shared by its f and g).
#[derive(Default)]
pub struct CallbackErrors {
    first: Mutex<Option<PyErr>>,
    failed: std::sync::atomic::AtomicBool,
}

impl CallbackErrors {
    /// True once a callback has failed.
    pub fn failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::Relaxed)
    }
    fn keep(&self, error: PyErr) {
        let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(error);
        }
        self.failed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    /// Takes the kept exception (and clears the slot for the next run).
    pub fn take(&self) -> Option<PyErr> {
        self.failed
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.first.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Which optional methods the Python object has.
#[derive(Clone, Copy, Debug, Default)]
struct Methods {
    value: bool,
    hvp_yy: bool,
    cross_xy: bool,
    cross_yx: bool,
    fused: bool,
}

/// A Python object seen as an [`Objective`].
pub struct PyObjective {
    object: Py<PyAny>,
    /// `outer` or `inner`, for messages.
    role: &'static str,
    dims: (usize, usize),
    n_samples: usize,
    methods: Methods,
    errors: Arc<CallbackErrors>,
}

impl PyObjective {
    /// Wraps `object`, checking that it has the required methods.
    pub fn new(
        py: Python<'_>,
        object: Py<PyAny>,
        role: &'static str,
        dims: (usize, usize),
        n_samples: usize,
        errors: Arc<CallbackErrors>,
    ) -> PyResult<Self> {
        let bound = object.bind(py);
        let has = |name: &str| -> PyResult<bool> {
            Ok(bound.hasattr(name)? && bound.getattr(name)?.is_callable())
        };
        for required in ["grad_x", "grad_y"] {
            if !has(required)? {
                return Err(PyTypeError::new_err(format!(
                    "{role}: the {role} objective must have a method `{required}(x, y, batch)`"
                )));
            }
        }
        let methods = Methods {
            value: has("value")?,
            hvp_yy: has("hvp_yy")?,
            cross_xy: has("cross_xy")?,
            cross_yx: has("cross_yx")?,
            fused: has("fused")?,
        };
        if role == "outer" && !methods.value {
            return Err(PyTypeError::new_err(
                "outer: the outer objective must have a method `value(x, y, batch)` (its value \
                 is the reported metric `outer_value`)",
            ));
        }
        Ok(Self {
            object,
            role,
            dims,
            n_samples,
            methods,
            errors,
        })
    }

    /// Calls `method` with `args` (already converted) and copies the returned array into `out`.
    fn call_into(
        &self,
        method: &str,
        make_args: impl for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyTuple>>,
        out: &mut Vector,
    ) {
        if self.errors.failed() {
            out.as_mut_slice().fill(f64::NAN);
            return;
        }
        let result = Python::attach(|py| -> PyResult<()> {
            let args = make_args(py)?;
            let returned = self.object.bind(py).call_method1(method, args)?;
            copy_array(py, &returned, out, || format!("{}.{method}", self.role))
        });
        if let Err(e) = result {
            self.errors.keep(e);
            out.as_mut_slice().fill(f64::NAN);
        }
    }

    /// Calls the product method `method(x, y, direction, batch)` into `out`.
    fn call_product(
        &self,
        method: &str,
        x: &Vector,
        y: &Vector,
        direction: &Vector,
        batch: Batch<'_>,
        out: &mut Vector,
    ) {
        self.call_into(
            method,
            |py| {
                (
                    array(py, x),
                    array(py, y),
                    array(py, direction),
                    batch_arg(py, batch),
                )
                    .into_pyobject(py)
            },
            out,
        );
    }

    fn call_value(&self, x: &Vector, y: &Vector, batch: Batch<'_>) -> f64 {
        if self.errors.failed() {
            return f64::NAN;
        }
        let result = Python::attach(|py| -> PyResult<f64> {
            if !self.methods.value {
                return Err(PyTypeError::new_err(format!(
                    "{}: this solver needs the value of the {} objective, which has no method \
                     `value(x, y, batch)`",
                    self.role, self.role
                )));
            }
            let args = (array(py, x), array(py, y), batch_arg(py, batch));
            let returned = self.object.bind(py).call_method1("value", args)?;
            returned.extract::<f64>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "{}.value must return a float, got {}",
                    self.role,
                    returned
                        .get_type()
                        .name()
                        .map(|n| n.to_string())
                        .unwrap_or_default()
                ))
            })
        });
        result.unwrap_or_else(|e| {
            self.errors.keep(e);
            f64::NAN
        })
    }
}

/// A new numpy array holding `v`.
fn array<'py>(py: Python<'py>, v: &Vector) -> Bound<'py, PyArray1<f64>> {
    PyArray1::from_slice(py, v.as_slice())
}

/// `None` for the full objective, else the indices as an `int64` array.
fn batch_arg<'py>(py: Python<'py>, batch: Batch<'_>) -> Bound<'py, PyAny> {
    match batch {
        Batch::Full => py.None().into_bound(py),
        Batch::Indices(idx) => PyArray1::from_iter(py, idx.iter().map(|&i| i as i64)).into_any(),
    }
}

/// Copies a returned array-like into `out`, checking its length.
fn copy_array(
    py: Python<'_>,
    returned: &Bound<'_, PyAny>,
    out: &mut Vector,
    what: impl Fn() -> String,
) -> PyResult<()> {
    let converted;
    let readonly: PyReadonlyArray1<f64> = match returned.extract() {
        Ok(array) => array,
        Err(_) => {
            converted = py
                .import("numpy")?
                .call_method1("asarray", (returned, "float64"))
                .map_err(|e| {
                    PyTypeError::new_err(format!("{} must return an array of floats: {e}", what()))
                })?
                .call_method0("ravel")?;
            converted.extract()?
        }
    };
    let values = readonly.as_array();
    if values.len() != out.nrows() {
        return Err(PyValueError::new_err(format!(
            "{} returned {} values, expected {}",
            what(),
            values.len(),
            out.nrows()
        )));
    }
    for (o, v) in out.as_mut_slice().iter_mut().zip(values.iter()) {
        *o = *v;
    }
    Ok(())
}

impl Objective for PyObjective {
    fn dims(&self) -> (usize, usize) {
        self.dims
    }
    fn n_samples(&self) -> usize {
        self.n_samples
    }
    fn value(&self, x: &Vector, y: &Vector, batch: Batch<'_>) -> f64 {
        self.call_value(x, y, batch)
    }
    fn grad_x(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        self.call_into(
            "grad_x",
            |py| (array(py, x), array(py, y), batch_arg(py, batch)).into_pyobject(py),
            out,
        );
    }
    fn grad_y(&self, x: &Vector, y: &Vector, batch: Batch<'_>, out: &mut Vector) {
        self.call_into(
            "grad_y",
            |py| (array(py, x), array(py, y), batch_arg(py, batch)).into_pyobject(py),
            out,
        );
    }
    fn fused(&self, x: &Vector, y: &Vector, v: Option<&Vector>, batch: Batch<'_>, out: Fused<'_>) {
        if !self.methods.fused {
            bilevel::core::objective::fused_by_components(self, x, y, v, batch, out);
            return;
        }
        let Fused {
            value,
            grad_x,
            grad_y,
            hvp_yy,
            cross_xy,
        } = out;
        let mut outputs: Vec<(&'static str, &mut Vector)> = Vec::new();
        if let Some(o) = grad_x {
            outputs.push(("grad_x", o));
        }
        if let Some(o) = grad_y {
            outputs.push(("grad_y", o));
        }
        if let Some(o) = hvp_yy {
            outputs.push(("hvp_yy", o));
        }
        if let Some(o) = cross_xy {
            outputs.push(("cross_xy", o));
        }
        let wants_value = value.is_some();
        if self.errors.failed() {
            for (_, o) in &mut outputs {
                o.as_mut_slice().fill(f64::NAN);
            }
            if let Some(value) = value {
                *value = f64::NAN;
            }
            return;
        }
        let result = Python::attach(|py| -> PyResult<Option<f64>> {
            let mut wanted: Vec<&str> = outputs.iter().map(|(name, _)| *name).collect();
            if wants_value {
                wanted.insert(0, "value");
            }
            let v_arg = match v {
                Some(v) => array(py, v).into_any(),
                None => py.None().into_bound(py),
            };
            let args = (
                array(py, x),
                array(py, y),
                v_arg,
                batch_arg(py, batch),
                PyTuple::new(py, &wanted)?,
            );
            let returned = self.object.bind(py).call_method1("fused", args)?;
            let dict = returned.cast::<PyDict>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "{}.fused must return a dict with the requested names {wanted:?}",
                    self.role
                ))
            })?;
            for (name, o) in &mut outputs {
                let item = dict.get_item(*name)?.ok_or_else(|| {
                    PyValueError::new_err(format!(
                        "{}.fused did not return the requested `{name}`",
                        self.role
                    ))
                })?;
                copy_array(py, &item, o, || format!("{}.fused[{name:?}]", self.role))?;
            }
            if wants_value {
                let item = dict.get_item("value")?.ok_or_else(|| {
                    PyValueError::new_err(format!(
                        "{}.fused did not return the requested `value`",
                        self.role
                    ))
                })?;
                return Ok(Some(item.extract::<f64>()?));
            }
            Ok(None)
        });
        match result {
            Ok(found) => {
                if let (Some(slot), Some(found)) = (value, found) {
                    *slot = found;
                }
            }
            Err(e) => {
                self.errors.keep(e);
                for (_, o) in &mut outputs {
                    o.as_mut_slice().fill(f64::NAN);
                }
                if let Some(value) = value {
                    *value = f64::NAN;
                }
            }
        }
    }
    fn hvp_yy(&self, x: &Vector, y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        if self.methods.hvp_yy {
            self.call_product("hvp_yy", x, y, v, batch, out);
        } else {
            let calls = fd::central(v, y.max_abs(), out, |e, buf| {
                self.grad_y(x, &(y + e), batch, buf)
            });
            fd::note_gradients_spent(0, calls);
        }
    }
    fn cross_xy(&self, x: &Vector, y: &Vector, v: &Vector, batch: Batch<'_>, out: &mut Vector) {
        if self.methods.cross_xy {
            self.call_product("cross_xy", x, y, v, batch, out);
        } else {
            let calls = fd::central(v, y.max_abs(), out, |e, buf| {
                self.grad_x(x, &(y + e), batch, buf)
            });
            fd::note_gradients_spent(calls, 0);
        }
    }
    fn cross_yx(&self, x: &Vector, y: &Vector, u: &Vector, batch: Batch<'_>, out: &mut Vector) {
        if self.methods.cross_yx {
            self.call_product("cross_yx", x, y, u, batch, out);
        } else {
            let calls = fd::central(u, x.max_abs(), out, |e, buf| {
                self.grad_y(&(x + e), y, batch, buf)
            });
            fd::note_gradients_spent(0, calls);
        }
    }
}
