from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import numpy.typing as npt

__version__: str

ArrayLike = npt.ArrayLike
Vector = npt.NDArray[np.float64]

def solvers() -> List[Dict[str, Any]]: ...
def problems() -> List[Dict[str, Any]]: ...

class Problem:
    kind: str
    @property
    def name(self) -> str: ...
    @property
    def dim_x(self) -> int: ...
    @property
    def dim_y(self) -> int: ...
    def start(self) -> Tuple[Vector, Vector]: ...
    def metric_names(self) -> List[str]: ...
    def metrics(self, x: ArrayLike, y: ArrayLike) -> Dict[str, float]: ...

def builtin(kind: str, **params: Any) -> Problem: ...
def Quadratic(**params: Any) -> Problem: ...
def QuadraticFromFactors(
    outer: Dict[str, ArrayLike], inner: Dict[str, ArrayLike], x0: Optional[ArrayLike] = ...
) -> Problem: ...
def LogRegHPO(
    X_train: Any,
    y_train: ArrayLike,
    X_val: Any,
    y_val: ArrayLike,
    X_test: Any = ...,
    y_test: Optional[ArrayLike] = ...,
    penalty: str = ...,
    **params: Any,
) -> Problem: ...
def DataCleaning(
    X: Any,
    y_noisy: ArrayLike,
    X_val: Any,
    y_val: ArrayLike,
    X_test: Any = ...,
    y_test: Optional[ArrayLike] = ...,
    corrupted: Optional[ArrayLike] = ...,
    **params: Any,
) -> Problem: ...
def CustomProblem(
    outer: Any,
    inner: Any,
    dim_x: int,
    dim_y: int,
    n_outer: int = ...,
    n_inner: int = ...,
    x0: Optional[ArrayLike] = ...,
    y0: Optional[ArrayLike] = ...,
    name: str = ...,
    newton_reference: bool = ...,
) -> Problem: ...

class Trace(List[Dict[str, Any]]):
    def to_pandas(self) -> Any: ...

class Result:
    x: Vector
    y: Vector
    v: Optional[Vector]
    status: str
    stop_reason: str
    message: Optional[str]
    iters: int
    solver_time_s: float
    counts: Dict[str, Any]
    final_metrics: Dict[str, float]
    warnings: List[str]
    trace: Trace
    solver: str
    params: Dict[str, Any]
    seed: int
    summary: Dict[str, Any]
    @property
    def oracle_calls(self) -> int: ...
    @property
    def samples(self) -> int: ...
    @property
    def draws(self) -> int: ...

def solve(
    problem: Problem,
    solver: str = ...,
    x0: Optional[ArrayLike] = ...,
    y0: Optional[ArrayLike] = ...,
    seed: int = ...,
    max_iters: Optional[int] = ...,
    max_seconds: Optional[float] = ...,
    eval_every: int = ...,
    *,
    max_oracle_calls: Optional[int] = ...,
    max_samples: Optional[int] = ...,
    max_draws: Optional[int] = ...,
    tol: Optional[float] = ...,
    stop_at: Optional[Tuple[str, float]] = ...,
    eval_every_seconds: Optional[float] = ...,
    eval_every_samples: Optional[int] = ...,
    eval_every_draws: Optional[int] = ...,
    divergence_threshold: Optional[float] = ...,
    **params: Any,
) -> Result: ...
def run_experiment(
    experiment: Optional[str] = ...,
    out: Optional[str] = ...,
    jobs: Optional[int] = ...,
    *,
    resume: Optional[str] = ...,
    overwrite: bool = ...,
    plots: bool = ...,
    max_iters: Optional[int] = ...,
    max_seconds: Optional[float] = ...,
    shard: Optional[Tuple[int, int]] = ...,
) -> Dict[str, Any]: ...
def merge(out: str, plots: bool = ...) -> Dict[str, Any]: ...
