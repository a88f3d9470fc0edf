"""The GIL is released while Rust runs; Ctrl-C stops a run and returns the partial result."""

import os
import signal
import threading
import time

import numpy as np
import pytest

import bilevel


def long_problem():
    return bilevel.Quadratic(dim_x=50, dim_y=50, n_outer=512, n_inner=512)


def test_other_python_threads_run_while_a_builtin_problem_solves():
    problem = long_problem()
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    thread = threading.Thread(target=ticker)
    thread.start()
    try:
        before = len(ticks)
        result = bilevel.solve(problem, "saba", max_seconds=0.5, eval_every=10**9)
    finally:
        stop.set()
        thread.join()
    assert result.status == "done" and result.stop_reason == "max_seconds"
    # With the GIL held for the whole run the ticker would be frozen (a handful of ticks at the
    # switch interval at most); released, it ticks every millisecond or so: 0.5 s gives
    # hundreds even on a loaded 2-core machine.
    assert len(ticks) - before > 50


@pytest.mark.skipif(os.name != "posix", reason="signals")
def test_ctrl_c_stops_the_run_and_returns_the_partial_result():
    problem = long_problem()
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    started = time.perf_counter()
    timer.start()
    with pytest.warns(RuntimeWarning, match="interrupted"):
        result = bilevel.solve(problem, "soba", max_seconds=60.0, eval_every=1000)
    elapsed = time.perf_counter() - started
    timer.cancel()
    assert result.status == "interrupted"
    assert result.stop_reason == "interrupted"
    assert result.iters > 0
    # The signal is looked for every 50 ms; 10 s leaves room for a slow machine.
    assert elapsed < 10.0
    # The partial result is a real one: evaluated at the iterate where it stopped.
    assert result.trace[-1]["iter"] == result.iters
    assert np.isfinite(result.final_metrics["value"])
    assert problem.metrics(result.x, result.y)["value"] == result.final_metrics["value"]
