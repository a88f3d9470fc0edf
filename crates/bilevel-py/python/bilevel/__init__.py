"""bilevel: bilevel optimization in Rust, driven from numpy.

    min_x F(x) = f(x, y*(x)),  y*(x) = argmin_y g(x, y)

Thirty hypergradient solvers (SOBA, SABA, SRBA, FSLA, MRBO, VRBO, LancBiO, SubBiO, ESJ,
UFO-BLO, AID, ITD, stocBiO, AmIGO, F2SA, BOME, MAML, ...) behind one call::

    import bilevel
    problem = bilevel.Quadratic(dim_x=10, dim_y=10)
    result = bilevel.solve(problem, solver="soba", max_iters=2000, outer_lr=0.05)
    result.x, result.status, result.final_metrics["value"]
    result.trace.to_pandas()

Problems: the built-in ones (``Quadratic``, ``LogRegHPO`` on numpy or scipy.sparse data,
``DataCleaning``, any kind of ``problems()`` through ``builtin``), or ``CustomProblem`` made of
two Python objects with ``grad_x``/``grad_y`` methods (PyTorch or JAX autograd fits there).

Arrays: every array argument is converted to float64 (a copy for other dtypes: int, bool,
float32); complex, object and string arrays are refused with ``TypeError``; NaN or infinite
values with ``ValueError``. Both name the argument.

While Rust runs a built-in problem the GIL is released; Ctrl-C stops a run cleanly and returns
the partial result (status ``"interrupted"``).
"""

from __future__ import annotations

import json
import math
import numbers
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from . import _bilevel

__all__ = [
    "CustomProblem",
    "DataCleaning",
    "LogRegHPO",
    "Problem",
    "Quadratic",
    "QuadraticFromFactors",
    "Result",
    "Trace",
    "builtin",
    "merge",
    "problems",
    "run_experiment",
    "solve",
    "solvers",
]

__version__ = _bilevel.__version__


# ----------------------------------------------------------------------------- catalogs


def solvers() -> List[Dict[str, Any]]:
    """Every solver: ``name``, ``description`` (one line), ``paper``, ``aliases`` and
    ``parameters`` (name -> default; a learning rate is a number or a schedule table such as
    ``{"kind": "inv_power", "a": 0.5, "c": 0.1, "t0": 1.0}``)."""
    return json.loads(_bilevel.solvers_json())


def problems() -> List[Dict[str, Any]]:
    """Every built-in problem kind: ``name``, ``description`` and ``parameters`` (name ->
    default). Build one with ``builtin(name, **parameters)``."""
    return json.loads(_bilevel.problems_json())


def _solver_parameters() -> Dict[str, Dict[str, Any]]:
    table = {}
    for entry in solvers():
        table[entry["name"]] = entry["parameters"]
        for alias in entry["aliases"]:
            table[alias] = entry["parameters"]
    return table


# ----------------------------------------------------------------------------- arguments


def _plain(value: Any, name: str) -> Any:
    """A JSON-ready copy of a parameter value (numpy scalars and arrays become Python ones)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{name}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{name}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist(), name)
    raise TypeError(f"{name}: cannot pass a {type(value).__name__} as a parameter")


def _float_array(value: Any, name: str, ndim: int) -> np.ndarray:
    """``value`` as a C-contiguous float64 array of ``ndim`` dimensions, finite."""
    try:
        array = np.asarray(value)
    except Exception as e:  # pragma: no cover - numpy's own message is kept
        raise TypeError(f"{name}: cannot read as an array: {e}") from e
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must hold real numbers (float64, or int/bool/float32 which are converted), "
            f"got dtype {array.dtype}"
        )
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {array.shape}")
    array = np.ascontiguousarray(array, dtype=np.float64)
    if not np.isfinite(array).all():
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(f"{name} has {bad} NaN or infinite value(s)")
    return array


def _is_sparse(value: Any) -> bool:
    try:
        import scipy.sparse  # noqa: F401
    except ImportError:
        return False
    import scipy.sparse as sp

    return sp.issparse(value)


def _design(value: Any, name: str) -> Tuple[tuple, int]:
    """A design spec for Rust, and its row count: dense arrays or scipy.sparse (made CSR)."""
    if _is_sparse(value):
        csr = value.tocsr(copy=True)
        if csr.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold real numbers, got dtype {csr.dtype}")
        csr.sum_duplicates()
        csr.sort_indices()
        data = np.ascontiguousarray(csr.data, dtype=np.float64)
        if not np.isfinite(data).all():
            raise ValueError(f"{name} has NaN or infinite value(s)")
        rows, cols = csr.shape
        indptr = np.ascontiguousarray(csr.indptr, dtype=np.int64)
        indices = np.ascontiguousarray(csr.indices, dtype=np.int64)
        return ("csr", int(rows), int(cols), indptr, indices, data), int(rows)
    array = _float_array(value, name, 2)
    return ("dense", array), array.shape[0]


def _labels(value: Any, name: str, rows: int, design_name: str) -> np.ndarray:
    labels = _float_array(value, name, 1)
    if labels.shape[0] != rows:
        raise ValueError(
            f"{name} has {labels.shape[0]} labels but {design_name} has {rows} rows"
        )
    return labels


def _dataset(X: Any, y: Any, x_name: str, y_name: str) -> tuple:
    spec, rows = _design(X, x_name)
    return (spec, _labels(y, y_name, rows, x_name))


def _check_kwargs(kind: str, params: Dict[str, Any], defaults: Dict[str, Any], what: str) -> None:
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(
            f"unknown {what} parameter(s) {', '.join(unknown)} for {kind!r}; its parameters "
            f"are: {', '.join(sorted(defaults))}"
        )


# ----------------------------------------------------------------------------- problems


class Problem:
    """A bilevel problem ready for ``solve``: f (outer) and g (inner) with their data.

    Attributes: ``name``, ``dim_x``, ``dim_y``. Methods: ``start()`` (the default (x0, y0)),
    ``metrics(x, y)`` (the metrics a run reports, exact where the problem has a reference:
    ``value`` = F(x), ``hypergrad_norm_sq``, ...), ``metric_names()``."""

    def __init__(self, native: "_bilevel.NativeProblem", kind: str):
        self._native = native
        self.kind = kind

    @property
    def name(self) -> str:
        return self._native.name

    @property
    def dim_x(self) -> int:
        return self._native.dims[0]

    @property
    def dim_y(self) -> int:
        return self._native.dims[1]

    def start(self) -> Tuple[np.ndarray, np.ndarray]:
        """The default starting point (x0, y0)."""
        return self._native.start()

    def metric_names(self) -> List[str]:
        return list(self._native.metric_names())

    def metrics(self, x: Any, y: Any) -> Dict[str, float]:
        """The metrics at (x, y) (NaN where a value is not finite)."""
        x = _float_array(x, "x", 1)
        y = _float_array(y, "y", 1)
        if x.shape[0] != self.dim_x:
            raise ValueError(f"x has length {x.shape[0]}, expected dim_x = {self.dim_x}")
        if y.shape[0] != self.dim_y:
            raise ValueError(f"y has length {y.shape[0]}, expected dim_y = {self.dim_y}")
        return _nan_for_none(json.loads(self._native.metrics(x, y)))

    def __repr__(self) -> str:
        return f"<bilevel.Problem {self.name!r}: dim x = {self.dim_x}, dim y = {self.dim_y}>"


def _problem_defaults(kind: str) -> Dict[str, Any]:
    for entry in problems():
        if entry["name"] == kind:
            return entry["parameters"]
    names = ", ".join(p["name"] for p in problems())
    raise ValueError(f"unknown problem kind {kind!r}; the built-in problems are: {names}")


def builtin(kind: str, **params: Any) -> Problem:
    """Any built-in problem by kind (``problems()`` lists them with their parameters), e.g.
    ``builtin("logreg_hpo", dataset={"shared": "ijcnn1"})`` for the shipped ijcnn1 or
    ``builtin("data_cleaning", n_train=2000)`` for MNIST hyper-cleaning."""
    if not isinstance(kind, str):
        raise TypeError(f"kind must be a str, got {type(kind).__name__}")
    defaults = _problem_defaults(kind)
    _check_kwargs(kind, params, defaults, "problem")
    config = {"kind": kind, **{k: _plain(v, k) for k, v in params.items()}}
    return Problem(_bilevel.NativeProblem.builtin(json.dumps(config)), kind)


def Quadratic(**params: Any) -> Problem:
    """The benchmark quadratic (finite sums of rank-one quadratics, closed-form reference).
    Parameters (defaults in ``problems()``): ``dim_x``, ``dim_y``, ``n_outer``, ``n_inner``,
    ``mu``, ``smoothness``, ``cross_smoothness``, ``x0``, ``seed``."""
    return builtin("quadratic", **params)


def QuadraticFromFactors(outer: Dict[str, Any], inner: Dict[str, Any], x0: Any = None) -> Problem:
    """The benchmark quadratic on your own per-sample factors. Each level (``outer`` = f,
    ``inner`` = g) is a dict of 2-D arrays with one sample per row: ``r`` and ``w``, ``a``
    (n x dim_y) and ``k``, ``u``, ``c`` (n x dim_x), giving

        q_i(x, y) = (r_i.y)^2 / 2 + (k_i.x)^2 / 2 + (u_i.x)(w_i.y) + a_i.y + c_i.x,

    each level the mean of its q_i. The closed-form reference (F(x), its gradient) is attached.
    ``x0`` defaults to zeros."""
    levels = []
    dims = None
    for role, level in (("outer", outer), ("inner", inner)):
        if not isinstance(level, dict):
            raise TypeError(f"{role} must be a dict of factor arrays")
        missing = sorted({"r", "k", "u", "w", "a", "c"} - set(level))
        if missing:
            raise ValueError(f"{role} lacks the factor(s) {', '.join(missing)}")
        arrays = {k: _float_array(level[k], f"{role}[{k!r}]", 2) for k in "rkuwac"}
        level_dims = (arrays["k"].shape[1], arrays["r"].shape[1])
        if dims is not None and dims != level_dims:
            raise ValueError(f"{role} has (dim_x, dim_y) = {level_dims}, the outer level {dims}")
        dims = level_dims
        levels.append(arrays)
    x0 = np.zeros(dims[0]) if x0 is None else _float_array(x0, "x0", 1)
    native = _bilevel.NativeProblem.quadratic_factors(levels[0], levels[1], dims[0], dims[1], x0)
    return Problem(native, "quadratic")


def LogRegHPO(
    X_train: Any,
    y_train: Any,
    X_val: Any,
    y_val: Any,
    X_test: Any = None,
    y_test: Any = None,
    penalty: str = "per_feature",
    **params: Any,
) -> Problem:
    """L2 hyperparameters of logistic regression, tuned on validation loss.

    ``X_*`` are dense arrays or scipy.sparse matrices (converted to CSR); labels are any two
    values (binary, mapped to -1/+1) or class values (multiclass). ``penalty`` is
    ``"per_feature"`` (dim x = features), ``"per_class"`` (multiclass) or ``"scalar"``. Other
    parameters: ``parametrization`` (``"exp"``: lambda = exp(x)), ``preprocess``, ``dense``,
    ``precision`` (``"f32"`` stores the design in float32, half the bytes per pass, arithmetic
    still float64), ``task``, ``x0``, ``y0_random``, ``seed``, ``max_train``, ``max_validation``,
    ``reference`` (see ``problems()``). Test metrics need ``X_test`` and ``y_test``."""
    defaults = _problem_defaults("logreg_hpo")
    for fixed in ("dataset", "validation_fraction", "test_fraction"):
        defaults.pop(fixed, None)
    _check_kwargs("LogRegHPO", params, defaults, "problem")
    if penalty not in ("per_feature", "per_class", "scalar"):
        raise ValueError(
            f"penalty must be 'per_feature', 'per_class' or 'scalar', got {penalty!r}"
        )
    train = _dataset(X_train, y_train, "X_train", "y_train")
    validation = _dataset(X_val, y_val, "X_val", "y_val")
    if (X_test is None) != (y_test is None):
        raise ValueError("X_test and y_test go together: give both or neither")
    test = None if X_test is None else _dataset(X_test, y_test, "X_test", "y_test")
    config = {"penalty": penalty, **{k: _plain(v, k) for k, v in params.items()}}
    native = _bilevel.NativeProblem.logreg_hpo(json.dumps(config), train, validation, test)
    return Problem(native, "logreg_hpo")


def DataCleaning(
    X: Any,
    y_noisy: Any,
    X_val: Any,
    y_val: Any,
    X_test: Any = None,
    y_test: Any = None,
    corrupted: Any = None,
    **params: Any,
) -> Problem:
    """Data hyper-cleaning: one weight sigma(x_i) per training sample of a multinomial
    logistic model (or, with ``model="mlp"``, ``hidden=[64]``, ``activation="tanh"``, of a
    small network), tuned on clean validation data.

    ``y_noisy`` are the training labels as they are (noisy); ``corrupted`` (optional, booleans)
    marks the samples known to be wrong, for the ``flagged_*`` metrics. Without ``X_test`` the
    test metrics are computed on the validation set. Other parameters: ``regularization``,
    ``intercept``, ``preprocess``, ``storage``, ``precision`` (``"f32"``: the design in float32),
    ``x0``, ``seed``, ``reference``, and
    ``corruption`` (default 0: corrupt this fraction of the labels further, for experiments)."""
    defaults = _problem_defaults("data_cleaning")
    for fixed in ("train", "heldout", "heldout_from_train", "n_train", "n_validation", "n_test"):
        defaults.pop(fixed, None)
    _check_kwargs("DataCleaning", params, defaults, "problem")
    train = _dataset(X, y_noisy, "X", "y_noisy")
    validation = _dataset(X_val, y_val, "X_val", "y_val")
    if (X_test is None) != (y_test is None):
        raise ValueError("X_test and y_test go together: give both or neither")
    test = validation if X_test is None else _dataset(X_test, y_test, "X_test", "y_test")
    mask = None
    if corrupted is not None:
        mask_array = np.asarray(corrupted)
        if mask_array.dtype.kind not in "bi" or mask_array.ndim != 1:
            raise TypeError("corrupted must be a 1-dimensional array of booleans")
        if mask_array.shape[0] != train[1].shape[0]:
            raise ValueError(
                f"corrupted has {mask_array.shape[0]} entries but X has {train[1].shape[0]} rows"
            )
        mask = [bool(v) for v in mask_array]
    config = {"corruption": 0.0, **{k: _plain(v, k) for k, v in params.items()}}
    native = _bilevel.NativeProblem.data_cleaning(json.dumps(config), train, validation, test, mask)
    return Problem(native, "data_cleaning")


def CustomProblem(
    outer: Any,
    inner: Any,
    dim_x: int,
    dim_y: int,
    n_outer: int = 1,
    n_inner: int = 1,
    x0: Any = None,
    y0: Any = None,
    name: str = "custom",
    newton_reference: bool = False,
) -> Problem:
    """A problem made of two Python objects, ``outer`` (f) and ``inner`` (g).

    Each object has ``grad_x(x, y, batch)`` and ``grad_y(x, y, batch)`` returning arrays of
    length ``dim_x`` and ``dim_y``, and optionally ``value(x, y, batch)`` (required for
    ``outer``), ``hvp_yy(x, y, v, batch)`` (the Hessian of ``y`` times v), ``cross_xy(x, y, v,
    batch)`` (d2/dx dy times v, length dim_x), ``cross_yx(x, y, u, batch)`` and
    ``fused(x, y, v, batch, wanted)`` returning a dict with the names in ``wanted`` (several
    oracles in one pass). ``batch`` is an int64 array of sample indices in ``range(n)`` (the
    objective is the mean over them, repeats counted) or ``None`` for the full objective.
    Missing products fall back to central differences of the gradients, counted as the two
    gradient calls they make. ``newton_reference=True`` adds exact metrics (F(x), its gradient
    norm) by Newton-CG on the inner problem, for a strongly convex g.

    An exception in a callback stops the run and is raised from ``solve``."""
    for arg, value in (("dim_x", dim_x), ("dim_y", dim_y), ("n_outer", n_outer), ("n_inner", n_inner)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise TypeError(f"{arg} must be an int, got {type(value).__name__}")
        if value < 1:
            raise ValueError(f"{arg} must be >= 1, got {value}")
    x0 = np.zeros(dim_x) if x0 is None else _float_array(x0, "x0", 1)
    y0 = np.zeros(dim_y) if y0 is None else _float_array(y0, "y0", 1)
    if x0.shape[0] != dim_x:
        raise ValueError(f"x0 has length {x0.shape[0]}, expected dim_x = {dim_x}")
    if y0.shape[0] != dim_y:
        raise ValueError(f"y0 has length {y0.shape[0]}, expected dim_y = {dim_y}")
    native = _bilevel.NativeProblem.custom(
        outer, inner, int(dim_x), int(dim_y), int(n_outer), int(n_inner), x0, y0, str(name),
        bool(newton_reference),
    )
    return Problem(native, "custom")


# ----------------------------------------------------------------------------- results


def _nan_for_none(metrics: Dict[str, Any]) -> Dict[str, float]:
    return {k: (math.nan if v is None else v) for k, v in metrics.items()}


class Trace(list):
    """The evaluations of a run, one dict per evaluation point: ``iter``, ``solver_time_s``,
    ``oracle_calls``, ``samples``, ``draws``, every metric, and ``diag.<name>`` for the
    solver's diagnostics."""

    def to_pandas(self):
        """The trace as a ``pandas.DataFrame`` (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as e:
            raise ImportError("Trace.to_pandas() needs pandas: pip install pandas") from e
        return pd.DataFrame(list(self))


def _counts_total(counts: Dict[str, Any]) -> Tuple[int, int]:
    calls = samples = 0
    for side in ("f", "g"):
        entry = counts.get(side, {})
        calls += sum(v for k, v in entry.items() if k not in ("samples", "fd_products"))
        samples += entry.get("samples", 0)
    return calls, samples


def _trace_row(record: Dict[str, Any]) -> Dict[str, Any]:
    calls, samples = _counts_total(record["counts"])
    row: Dict[str, Any] = {
        "iter": record["iter"],
        "solver_time_s": record["solver_time_s"],
        "oracle_calls": calls,
        "samples": samples,
        "draws": record["counts"].get("draws", 0),
    }
    row.update(_nan_for_none(record["metrics"]))
    for name, value in record.get("diagnostics", {}).items():
        row[f"diag.{name}"] = math.nan if value is None else value
    if record.get("eval_error"):
        row["eval_error"] = record["eval_error"]
    return row


class Result:
    """The outcome of ``solve``.

    - ``x``, ``y``: the final iterate; ``v``: the final adjoint (solvers that keep one) or None;
    - ``status``: ``"done"``, ``"diverged"``, ``"failed"`` or ``"interrupted"`` (Ctrl-C);
      ``stop_reason`` (``"max_iters"``, ``"max_seconds"``, ``"target_reached"``, ...) and
      ``message``;
    - ``iters``, ``solver_time_s`` (solver time only, evaluations excluded);
    - ``counts``: oracle calls per objective and kind, samples, draws (``oracle_calls``,
      ``samples`` and ``draws`` give the totals);
    - ``final_metrics``: the metrics at (x, y) for a run that did not diverge;
    - ``trace``: a ``Trace`` (list of dicts, ``.to_pandas()``); ``warnings``;
    - ``solver``, ``params`` (the full configuration, defaults included), ``seed``."""

    def __init__(self, x, y, v, summary: Dict[str, Any], trace: Trace, solver: str,
                 params: Dict[str, Any], seed: int):
        self.x = x
        self.y = y
        self.v = v
        self.status: str = summary["status"]
        self.stop_reason: str = summary["stop_reason"]
        self.message: Optional[str] = summary.get("message")
        self.iters: int = summary["iters"]
        self.solver_time_s: float = summary["solver_time_s"]
        self.counts: Dict[str, Any] = summary["counts"]
        self.final_metrics: Dict[str, float] = _nan_for_none(summary.get("final_metrics", {}))
        self.warnings: List[str] = list(summary.get("warnings", []))
        self.trace = trace
        self.solver = solver
        self.params = params
        self.seed = seed
        self.summary = summary

    @property
    def oracle_calls(self) -> int:
        return _counts_total(self.counts)[0]

    @property
    def samples(self) -> int:
        return _counts_total(self.counts)[1]

    @property
    def draws(self) -> int:
        return int(self.counts.get("draws", 0))

    def __repr__(self) -> str:
        metric = ""
        for name in ("value", "outer_value"):
            if name in self.final_metrics:
                metric = f", {name} = {self.final_metrics[name]:.6g}"
                break
        return (
            f"<bilevel.Result {self.solver}: {self.status} ({self.stop_reason}) after "
            f"{self.iters} iterations, {self.solver_time_s:.3g} s{metric}>"
        )


_RUN_OPTIONS = (
    "max_iters",
    "max_seconds",
    "max_oracle_calls",
    "max_samples",
    "max_draws",
    "tol",
    "eval_every",
    "eval_every_seconds",
    "eval_every_samples",
    "eval_every_draws",
    "divergence_threshold",
)


def solve(
    problem: Problem,
    solver: str = "soba",
    x0: Any = None,
    y0: Any = None,
    seed: int = 0,
    max_iters: Optional[int] = None,
    max_seconds: Optional[float] = None,
    eval_every: int = 100,
    *,
    max_oracle_calls: Optional[int] = None,
    max_samples: Optional[int] = None,
    max_draws: Optional[int] = None,
    tol: Optional[float] = None,
    stop_at: Optional[Tuple[str, float]] = None,
    eval_every_seconds: Optional[float] = None,
    eval_every_samples: Optional[int] = None,
    eval_every_draws: Optional[int] = None,
    divergence_threshold: Optional[float] = None,
    **params: Any,
) -> Result:
    """Runs ``solver`` on ``problem`` and returns a ``Result``.

    - ``x0``, ``y0``: the start (default: the problem's, ``problem.start()``); ``seed`` drives
      the minibatches and any randomness of the solver: the same seed gives the same iterates,
      bit for bit.
    - Budgets (at least one): ``max_iters``, ``max_seconds`` (solver time), ``max_oracle_calls``,
      ``max_samples``, ``max_draws``; ``tol`` stops once the exact squared hypergradient norm is
      at most ``tol`` (problems with a reference), ``stop_at=(metric, value)`` once a metric is
      at most ``value``.
    - Evaluation (the trace): every ``eval_every`` iterations, and/or by ``eval_every_seconds``,
      ``eval_every_samples``, ``eval_every_draws``.
    - ``**params``: the solver's parameters (``solvers()`` lists them with their defaults);
      an unknown one is a ``ValueError`` naming it.
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be a bilevel.Problem, got {type(problem).__name__}")
    if not isinstance(solver, str):
        raise TypeError(f"solver must be a str (a name from solvers()), got {type(solver).__name__}")
    table = _solver_parameters()
    if solver not in table:
        raise ValueError(
            f"unknown solver {solver!r}; the solvers are: {', '.join(sorted(table))}"
        )
    _check_kwargs(solver, params, table[solver], "solver")
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    start_x, start_y = problem.start()
    x0 = start_x if x0 is None else _float_array(x0, "x0", 1)
    y0 = start_y if y0 is None else _float_array(y0, "y0", 1)
    if x0.shape[0] != problem.dim_x:
        raise ValueError(f"x0 has length {x0.shape[0]}, expected dim_x = {problem.dim_x}")
    if y0.shape[0] != problem.dim_y:
        raise ValueError(f"y0 has length {y0.shape[0]}, expected dim_y = {problem.dim_y}")
    values = {
        "max_iters": max_iters,
        "max_seconds": max_seconds,
        "max_oracle_calls": max_oracle_calls,
        "max_samples": max_samples,
        "max_draws": max_draws,
        "tol": tol,
        "eval_every": eval_every,
        "eval_every_seconds": eval_every_seconds,
        "eval_every_samples": eval_every_samples,
        "eval_every_draws": eval_every_draws,
        "divergence_threshold": divergence_threshold,
    }
    options: Dict[str, Any] = {}
    for name in _RUN_OPTIONS:
        value = values[name]
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
        if value < 0 or not math.isfinite(float(value)):
            raise ValueError(f"{name} must be finite and >= 0, got {value}")
        integral = name in ("max_iters", "max_oracle_calls", "max_samples", "max_draws",
                            "eval_every", "eval_every_samples", "eval_every_draws")
        if integral and not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an int, got {value!r}")
        options[name] = int(value) if integral else float(value)
    if stop_at is not None:
        try:
            metric, target = stop_at
        except (TypeError, ValueError):
            raise TypeError("stop_at must be a (metric, value) pair") from None
        options["stop_at"] = {"metric": str(metric), "value": float(target)}
    if not any(options.get(b) is not None for b in
               ("max_iters", "max_seconds", "max_oracle_calls", "max_samples", "max_draws")):
        raise ValueError(
            "set a budget: max_iters, max_seconds, max_oracle_calls, max_samples or max_draws"
        )
    config = {"kind": solver, **{k: _plain(v, k) for k, v in params.items()}}
    x, y, v, summary_json, trace_json, interrupted = _bilevel.solve(
        problem._native, json.dumps(config), json.dumps(options), x0, y0, int(seed)
    )
    summary = json.loads(summary_json)
    trace = Trace(_trace_row(r) for r in json.loads(trace_json))
    full_params = dict(table[solver])
    full_params.update({k: _plain(v, k) for k, v in params.items()})
    result = Result(x, y, v, summary, trace, solver, full_params, int(seed))
    if interrupted:
        import warnings

        warnings.warn(
            f"bilevel.solve: interrupted (Ctrl-C) after {result.iters} iterations; "
            "returning the partial result",
            RuntimeWarning,
            stacklevel=2,
        )
    return result


# ----------------------------------------------------------------------------- experiments


def run_experiment(
    experiment: Optional[str] = None,
    out: Optional[str] = None,
    jobs: Optional[int] = None,
    *,
    resume: Optional[str] = None,
    overwrite: bool = False,
    plots: bool = True,
    max_iters: Optional[int] = None,
    max_seconds: Optional[float] = None,
    shard: Optional[Tuple[int, int]] = None,
) -> Dict[str, Any]:
    """Runs an experiment file (TOML) with the same engine as ``bilevel run``: the grid of
    solvers x parameters x seeds, in ``jobs`` parallel runs (default: every core), writing
    ``out/summary.csv``, ``out/report.md``, traces and figures (``plots=False`` skips them).
    ``resume=DIR`` continues an interrupted grid; ``overwrite`` replaces earlier results;
    ``max_iters``/``max_seconds`` replace the file's budgets.

    ``shard=(k, n)`` runs only part k of n (1 <= k <= n) of the grid, as ``bilevel run --shard
    k/n``: runs k, k+n, k+2n, ... in the file's order, into the shared folder ``out``, beside
    the other parts (other processes or machines: map the n shards with Ray, Dask or a job
    array), skipping runs that are already complete. It writes no summary: call
    :func:`merge` once the shards are done.

    Returns a dict: ``name``, ``out``, ``runs``, ``skipped``, ``not_done`` (runs that did not
    end ``done``), ``warnings``, ``elapsed_s``, ``shard``, and ``summary_csv`` (its path; for a
    shard, where :func:`merge` writes it)."""
    if experiment is None and resume is None:
        raise ValueError("give an experiment file, or resume=DIR")
    if jobs is not None and (not isinstance(jobs, numbers.Integral) or jobs < 1):
        raise ValueError(f"jobs must be an int >= 1, got {jobs!r}")
    if shard is not None:
        if (not isinstance(shard, tuple) or len(shard) != 2
                or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in shard)):
            raise TypeError(f"shard must be a tuple (k, n) of ints, got {shard!r}")
        if not 1 <= shard[0] <= shard[1]:
            raise ValueError(f"shard must be (k, n) with 1 <= k <= n, got {shard!r}")
        shard = (int(shard[0]), int(shard[1]))
    report = json.loads(
        _bilevel.run_experiment(
            None if experiment is None else str(experiment),
            None if out is None else str(out),
            None if resume is None else str(resume),
            bool(overwrite),
            bool(plots),
            None if jobs is None else int(jobs),
            None if max_iters is None else int(max_iters),
            None if max_seconds is None else float(max_seconds),
            shard,
        )
    )
    import os

    report["summary_csv"] = os.path.join(report["out"], "summary.csv")
    return report


def merge(out: str, plots: bool = True) -> Dict[str, Any]:
    """Gathers the shards of the output folder ``out`` (``run_experiment(..., shard=(k, n))``,
    ``bilevel run --shard``, ``bilevel slurm``) into ``summary.csv``, ``report.md`` and the
    figures, as ``bilevel merge``. Works while shards still run (it reads complete traces only).

    Returns a dict: ``complete`` (every run is), ``runs`` (``id``, ``shard``, ``state``:
    ``complete``, ``failed`` or ``missing``), ``running`` (shards running now), ``count`` (n),
    ``rerun`` (the command that runs the shards with missing or failed runs, or None), ``out``
    and ``summary_csv``."""
    report = json.loads(_bilevel.merge(str(out), bool(plots)))
    import os

    report["summary_csv"] = os.path.join(report["out"], "summary.csv")
    return report
