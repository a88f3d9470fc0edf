//! The native part of the `bilevel` Python package (`bilevel._bilevel`). The Python layer
//! (`python/bilevel/__init__.py`) checks and converts arguments, then calls these functions;
//! configurations and summaries cross as JSON text, vectors as numpy arrays.

mod callback;
mod errors;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bilevel::algorithms::SolverConfig;
use bilevel::core::{Problem, Vector, VectorExt};
use bilevel::data::{CsrMatrix, Dataset, DenseMatrix, Design};
use bilevel::problems::ProblemConfig;
use bilevel::problems::common::ReferenceConfig;
use bilevel::problems::data_cleaning::DataCleaningConfig;
use bilevel::problems::logreg_hpo::LogregHpoConfig;
use bilevel::run::{InMemory, RunOptions, Runner};
use numpy::{PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use callback::{CallbackErrors, PyObjective};

/// A bilevel problem: built-in (built in Rust from its parameters or from numpy arrays) or
/// made of Python objectives.
#[pyclass(frozen, module = "bilevel._bilevel", name = "NativeProblem")]
struct NativeProblem {
    problem: Problem,
    /// The exceptions of the Python objectives, for problems made of them.
    callbacks: Option<Arc<CallbackErrors>>,
}

fn value_error(what: &str, e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("{what}: {e}"))
}

fn parse_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> PyResult<T> {
    serde_json::from_str(text).map_err(|e| value_error(what, e))
}

fn vector(values: PyReadonlyArray1<'_, f64>) -> Vector {
    let view = values.as_array();
    Vector::from_fn(view.len(), |i| view[i])
}

/// A design from `("dense", X)` or `("csr", rows, cols, indptr, indices, data)`.
fn design(spec: &Bound<'_, PyTuple>, what: &str) -> PyResult<Design> {
    let kind: String = spec.get_item(0)?.extract()?;
    match kind.as_str() {
        "dense" => {
            let x: PyReadonlyArray2<'_, f64> = spec.get_item(1)?.extract()?;
            let view = x.as_array();
            let (rows, cols) = view.dim();
            let values: Vec<f64> = view.iter().copied().collect();
            Ok(Design::Dense(
                DenseMatrix::new(rows, cols, values).map_err(|e| value_error(what, e))?,
            ))
        }
        "csr" => {
            let rows: usize = spec.get_item(1)?.extract()?;
            let cols: usize = spec.get_item(2)?.extract()?;
            let indptr: PyReadonlyArray1<'_, i64> = spec.get_item(3)?.extract()?;
            let indices: PyReadonlyArray1<'_, i64> = spec.get_item(4)?.extract()?;
            let data: PyReadonlyArray1<'_, f64> = spec.get_item(5)?.extract()?;
            let to_usize = |v: i64| {
                usize::try_from(v)
                    .map_err(|_| value_error(what, "negative index in the CSR arrays"))
            };
            let indptr: Vec<usize> = indptr
                .as_array()
                .iter()
                .map(|&v| to_usize(v))
                .collect::<PyResult<_>>()?;
            let indices: Vec<u32> = indices
                .as_array()
                .iter()
                .map(|&v| {
                    u32::try_from(v).map_err(|_| value_error(what, "column index out of range"))
                })
                .collect::<PyResult<_>>()?;
            let data: Vec<f64> = data.as_array().to_vec();
            Ok(Design::Sparse(
                CsrMatrix::new(rows, cols, indptr, indices, data)
                    .map_err(|e| value_error(what, e))?,
            ))
        }
        other => Err(value_error(what, format!("unknown design kind {other:?}"))),
    }
}

/// A dataset from `(design_spec, labels)`.
fn dataset(pair: &Bound<'_, PyTuple>, what: &str) -> PyResult<Dataset> {
    let spec = pair.get_item(0)?;
    let spec = spec.cast::<PyTuple>()?;
    let labels: PyReadonlyArray1<'_, f64> = pair.get_item(1)?.extract()?;
    Dataset::new(design(spec, what)?, labels.as_array().to_vec()).map_err(|e| value_error(what, e))
}

#[pymethods]
impl NativeProblem {
    /// A built-in problem from its `kind` and parameters (JSON object text).
    #[staticmethod]
    fn builtin(py: Python<'_>, config_json: &str) -> PyResult<Self> {
        let config: ProblemConfig = parse_json("problem", config_json)?;
        config.validate().map_err(errors::to_py)?;
        let problem = py.detach(|| config.build()).map_err(errors::to_py)?;
        Ok(Self {
            problem,
            callbacks: None,
        })
    }

    /// `logreg_hpo` on data from memory: `train`, `validation` and `test` are
    /// `(design_spec, labels)` pairs (test may be None).
    #[staticmethod]
    #[pyo3(signature = (config_json, train, validation, test=None))]
    fn logreg_hpo(
        py: Python<'_>,
        config_json: &str,
        train: &Bound<'_, PyTuple>,
        validation: &Bound<'_, PyTuple>,
        test: Option<&Bound<'_, PyTuple>>,
    ) -> PyResult<Self> {
        let config: LogregHpoConfig = parse_json("LogRegHPO", config_json)?;
        let train = dataset(train, "X_train")?;
        let validation = dataset(validation, "X_val")?;
        let test = test.map(|t| dataset(t, "X_test")).transpose()?;
        let problem = py
            .detach(|| config.build_from_splits(train, validation, test))
            .map_err(errors::to_py)?;
        Ok(Self {
            problem,
            callbacks: None,
        })
    }

    /// `data_cleaning` on data from memory.
    #[staticmethod]
    #[pyo3(signature = (config_json, train, validation, test, corrupted=None))]
    fn data_cleaning(
        py: Python<'_>,
        config_json: &str,
        train: &Bound<'_, PyTuple>,
        validation: &Bound<'_, PyTuple>,
        test: &Bound<'_, PyTuple>,
        corrupted: Option<Vec<bool>>,
    ) -> PyResult<Self> {
        let config: DataCleaningConfig = parse_json("DataCleaning", config_json)?;
        let train = dataset(train, "X")?;
        let validation = dataset(validation, "X_val")?;
        let test = dataset(test, "X_test")?;
        let problem = py
            .detach(|| config.build_from_splits(train, validation, test, corrupted))
            .map_err(errors::to_py)?;
        Ok(Self {
            problem,
            callbacks: None,
        })
    }

    /// The benchmark quadratic on given per-sample factors: `outer` and `inner` map `r`, `k`,
    /// `u`, `w`, `a`, `c` to row-major arrays (one sample per row).
    #[staticmethod]
    fn quadratic_factors(
        outer: &Bound<'_, pyo3::types::PyDict>,
        inner: &Bound<'_, pyo3::types::PyDict>,
        dim_x: usize,
        dim_y: usize,
        x0: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<Self> {
        use bilevel::problems::quadratic::{QuadraticObjective, quadratic_problem};
        let level =
            |d: &Bound<'_, pyo3::types::PyDict>, what: &str| -> PyResult<QuadraticObjective> {
                let get = |name: &str| -> PyResult<Vec<f64>> {
                    let item = d
                        .get_item(name)?
                        .ok_or_else(|| value_error(what, format!("missing factor `{name}`")))?;
                    let array: PyReadonlyArray2<'_, f64> = item.extract()?;
                    Ok(array.as_array().iter().copied().collect())
                };
                QuadraticObjective::from_factors(
                    dim_x,
                    dim_y,
                    get("r")?,
                    get("k")?,
                    get("u")?,
                    get("w")?,
                    get("a")?,
                    get("c")?,
                )
                .map_err(|e| value_error(what, e))
            };
        let f = level(outer, "outer")?;
        let g = level(inner, "inner")?;
        let problem = quadratic_problem("quadratic", f, g, vector(x0)).map_err(errors::to_py)?;
        Ok(Self {
            problem,
            callbacks: None,
        })
    }

    /// A problem whose objectives are Python objects.
    #[staticmethod]
    #[pyo3(signature = (outer, inner, dim_x, dim_y, n_outer, n_inner, x0, y0, name, newton_reference))]
    fn custom(
        py: Python<'_>,
        outer: Py<PyAny>,
        inner: Py<PyAny>,
        dim_x: usize,
        dim_y: usize,
        n_outer: usize,
        n_inner: usize,
        x0: PyReadonlyArray1<'_, f64>,
        y0: PyReadonlyArray1<'_, f64>,
        name: &str,
        newton_reference: bool,
    ) -> PyResult<Self> {
        let errors = Arc::new(CallbackErrors::default());
        let f = PyObjective::new(py, outer, "outer", (dim_x, dim_y), n_outer, errors.clone())?;
        let g = PyObjective::new(py, inner, "inner", (dim_x, dim_y), n_inner, errors.clone())?;
        let mut problem = Problem::new(name, f, g)
            .and_then(|p| p.with_start(vector(x0), vector(y0)))
            .map_err(errors::to_py)?;
        if newton_reference {
            problem = problem.with_newton_reference(ReferenceConfig::default());
        }
        Ok(Self {
            problem,
            callbacks: Some(errors),
        })
    }

    /// The problem's name.
    #[getter]
    fn name(&self) -> String {
        self.problem.name().to_owned()
    }

    /// (dim x, dim y).
    #[getter]
    fn dims(&self) -> (usize, usize) {
        self.problem.dims()
    }

    /// The default start (x0, y0).
    fn start<'py>(
        &self,
        py: Python<'py>,
    ) -> (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>) {
        let (x0, y0) = self.problem.start();
        (
            PyArray1::from_slice(py, x0.as_slice()),
            PyArray1::from_slice(py, y0.as_slice()),
        )
    }

    /// The names of the metrics this problem reports.
    fn metric_names(&self) -> Vec<String> {
        self.problem.metric_names()
    }

    /// The metrics at (x, y) as JSON text.
    fn metrics(
        &self,
        py: Python<'_>,
        x: PyReadonlyArray1<'_, f64>,
        y: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<String> {
        let (x, y) = (vector(x), vector(y));
        let metrics = py
            .detach(|| self.problem.metrics(&x, &y, None))
            .map_err(errors::to_py)?;
        if let Some(e) = self.callbacks.as_ref().and_then(|c| c.take()) {
            return Err(e);
        }
        Ok(serde_json::to_string(&metrics).expect("metrics serialize"))
    }
}

/// Every solver: kind, aliases, paper, one-line description and parameters with defaults
/// (JSON text).
#[pyfunction]
fn solvers_json() -> String {
    let list: Vec<serde_json::Value> = SolverConfig::all_defaults()
        .iter()
        .map(|c| {
            let mut parameters = serde_json::to_value(c).expect("configs serialize");
            if let Some(object) = parameters.as_object_mut() {
                object.remove("kind");
            }
            serde_json::json!({
                "name": c.kind(),
                "aliases": c.aliases(),
                "paper": c.paper(),
                "description": c.description(),
                "parameters": parameters,
            })
        })
        .collect();
    serde_json::to_string(&list).expect("catalog serializes")
}

/// Every built-in problem kind with its description and default parameters (JSON text).
#[pyfunction]
fn problems_json() -> String {
    let list: Vec<serde_json::Value> = ProblemConfig::catalog()
        .into_iter()
        .map(|(kind, about, parameters)| {
            let mut parameters = parameters;
            if let Some(object) = parameters.as_object_mut() {
                object.remove("kind");
            }
            serde_json::json!({"name": kind, "description": about, "parameters": parameters})
        })
        .collect();
    serde_json::to_string(&list).expect("catalog serializes")
}

/// How often the main thread looks for Ctrl-C while a run holds no GIL.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// Runs `solver_json` on `problem` from (x0, y0) with `seed` under `options_json`, without the
/// GIL (taken back only for Python objectives and, every 50 ms, to look for Ctrl-C). Returns
/// (x, y, v, summary JSON, trace JSON, interrupted by Ctrl-C).
#[pyfunction]
#[allow(clippy::type_complexity)]
fn solve<'py>(
    py: Python<'py>,
    problem: &NativeProblem,
    solver_json: &str,
    options_json: &str,
    x0: PyReadonlyArray1<'_, f64>,
    y0: PyReadonlyArray1<'_, f64>,
    seed: u64,
) -> PyResult<(
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
    Option<Bound<'py, PyArray1<f64>>>,
    String,
    String,
    bool,
)> {
    let config: SolverConfig = parse_json("solver", solver_json)?;
    config.validate().map_err(errors::to_py)?;
    let options: RunOptions = parse_json("run options", options_json)?;
    options.validate().map_err(errors::to_py)?;
    let (x0, y0) = (vector(x0), vector(y0));
    let run_problem = problem.problem.fresh();
    let callbacks = problem.callbacks.clone();
    if let Some(c) = &callbacks {
        c.take();
    }
    let trace = InMemory::new();
    let mut signal: Option<PyErr> = None;
    let outcome = py.detach(|| {
        let mut last_poll = Instant::now();
        let signal = &mut signal;
        let callbacks = callbacks.clone();
        let interrupt = move || {
            if callbacks.as_ref().is_some_and(|c| c.failed()) {
                return true;
            }
            if signal.is_some() {
                return true;
            }
            if last_poll.elapsed() >= SIGNAL_POLL {
                last_poll = Instant::now();
                if let Err(e) = Python::attach(|py| py.check_signals()) {
                    *signal = Some(e);
                    return true;
                }
            }
            false
        };
        Runner::new(options)
            .observe(trace.clone())
            .interrupt_when(interrupt)
            .solve_config(&config, &run_problem, x0, y0, seed)
    });
    if let Some(e) = callbacks.as_ref().and_then(|c| c.take()) {
        return Err(e);
    }
    let solution = outcome.map_err(errors::to_py)?;
    let summary = serde_json::to_string(&solution.summary).expect("summaries serialize");
    let records = serde_json::to_string(&trace.records()).expect("records serialize");
    Ok((
        PyArray1::from_slice(py, solution.x.as_slice()),
        PyArray1::from_slice(py, solution.y.as_slice()),
        solution
            .v
            .as_ref()
            .map(|v| PyArray1::from_slice(py, v.as_slice())),
        summary,
        records,
        signal.is_some(),
    ))
}

/// Runs an experiment file with the command line's engine (JSON text of the request in, of
/// the report out).
#[pyfunction]
#[pyo3(signature = (experiment, out, resume, overwrite, plots, jobs, max_iters, max_seconds, shard))]
fn run_experiment(
    py: Python<'_>,
    experiment: Option<std::path::PathBuf>,
    out: Option<std::path::PathBuf>,
    resume: Option<std::path::PathBuf>,
    overwrite: bool,
    plots: bool,
    jobs: Option<usize>,
    max_iters: Option<u64>,
    max_seconds: Option<f64>,
    shard: Option<(usize, usize)>,
) -> PyResult<String> {
    use bilevel_experiment::experiment::BudgetOverride;
    use bilevel_experiment::session;
    let shard = shard
        .map(|(k, n)| bilevel_experiment::shard::Shard::new(k, n))
        .transpose()
        .map_err(|e| PyValueError::new_err(format!("shard: {}", e.0)))?;
    let request = session::RunRequest {
        experiment,
        out,
        resume,
        overwrite,
        plots,
        jobs,
        progress: false,
        budget: BudgetOverride {
            max_iters,
            max_seconds,
        },
        shard,
    };
    let report = py
        .detach(|| -> anyhow::Result<session::RunReport> {
            let resolved = session::resolve(&request)?;
            session::run_experiment(&request, resolved)
        })
        .map_err(errors::engine_to_py)?;
    let not_done: Vec<serde_json::Value> = report
        .not_done()
        .iter()
        .map(|o| {
            serde_json::json!({
                "id": o.spec.id,
                "status": o.summary.status.as_str(),
                "message": o.summary.message,
            })
        })
        .collect();
    let warnings: Vec<serde_json::Value> = report
        .warnings()
        .into_iter()
        .map(|(w, names)| serde_json::json!({"warning": w, "solvers": names}))
        .collect();
    Ok(serde_json::json!({
        "name": report.experiment.name,
        "out": report.out,
        "runs": report.outcomes.len(),
        "skipped": report.skipped,
        "not_done": not_done,
        "warnings": warnings,
        "elapsed_s": report.elapsed_s,
        "shard": report.shard.map(|s| (s.index, s.count)),
    })
    .to_string())
}

/// Gathers the shards of an output folder (`bilevel merge`): JSON text of the runs' states, the
/// running shards and the command that runs the missing ones.
#[pyfunction]
fn merge(py: Python<'_>, out: std::path::PathBuf, plots: bool) -> PyResult<String> {
    use bilevel_experiment::shard::{self, RunState};
    let report = py
        .detach(|| shard::merge(&out, plots))
        .map_err(errors::engine_to_py)?;
    let runs: Vec<serde_json::Value> = report
        .runs
        .iter()
        .map(|(id, k, state)| {
            let state = match state {
                RunState::Complete => "complete",
                RunState::Failed => "failed",
                RunState::Missing => "missing",
            };
            serde_json::json!({"id": id, "shard": k, "state": state})
        })
        .collect();
    Ok(serde_json::json!({
        "out": report.out,
        "count": report.count,
        "runs": runs,
        "running": report.running,
        "complete": report.is_complete(),
        "rerun": report.resubmit_command("bilevel"),
    })
    .to_string())
}

/// The native module.
#[pymodule]
fn _bilevel(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // One full-pass worker per CPU, each on its own (values do not depend on it).
    bilevel::run::threads::pin_pool_threads();
    m.add_class::<NativeProblem>()?;
    m.add_function(wrap_pyfunction!(solvers_json, m)?)?;
    m.add_function(wrap_pyfunction!(problems_json, m)?)?;
    m.add_function(wrap_pyfunction!(merge, m)?)?;
    m.add_function(wrap_pyfunction!(solve, m)?)?;
    m.add_function(wrap_pyfunction!(run_experiment, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("GIT_COMMIT", bilevel_experiment::GIT_COMMIT)?;
    Ok(())
}
