"""Every registered solver driven from Python ends on the iterate of the Rust run with the
same problem, configuration and seed, bit for bit (`bilevel solve --json` prints the final
iterate with round-trip float formatting)."""

import numpy as np
import pytest

import bilevel

QUADRATIC = dict(dim_x=8, dim_y=6, n_outer=50, n_inner=40, seed=5)
META = dict(tasks=4, support=5, query=5)
# The unrolled (meta-learning) solvers need a problem built with an inner loop to unroll.
META_SOLVERS = {"maml", "fomaml", "reptile", "anil", "ufo_blo", "imaml"}
SOLVERS = [s["name"] for s in bilevel.solvers()]


def same_bits(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and np.array_equal(a.view(np.uint64), b.view(np.uint64))


def test_the_registry_is_all_there():
    assert len(SOLVERS) == 31
    assert len(set(SOLVERS)) == 31
    assert META_SOLVERS <= set(SOLVERS)
    for entry in bilevel.solvers():
        assert entry["description"] and entry["paper"]
        assert isinstance(entry["parameters"], dict)
    kinds = {p["name"] for p in bilevel.problems()}
    assert {"quadratic", "logreg_hpo", "data_cleaning", "meta_linear"} <= kinds


@pytest.mark.parametrize("solver", SOLVERS)
def test_quadratic_iterates_equal_the_rust_run(solver, rust_solve):
    params = [(k, v) for k, v in QUADRATIC.items()]
    code, rust = rust_solve("quadratic", solver, problem_params=params, max_iters=25, seed=3,
                            eval_every=10)
    problem = bilevel.Quadratic(**QUADRATIC)
    if solver in META_SOLVERS:
        # Both refuse the quadratic, as a configuration error.
        assert code == 2, rust
        with pytest.raises(ValueError, match="unrolled"):
            bilevel.solve(problem, solver, max_iters=25, seed=3, eval_every=10)
        return
    assert code == 0, rust
    result = bilevel.solve(problem, solver, max_iters=25, seed=3, eval_every=10)
    assert result.status == rust["summary"]["status"] == "done"
    assert result.iters == 25
    assert same_bits(result.x, rust["x"]), (result.x, rust["x"])
    assert same_bits(result.y, rust["y"])
    if rust["v"] is None:
        assert result.v is None
    else:
        assert same_bits(result.v, rust["v"])
    assert result.counts == rust["summary"]["counts"]
    for name, value in rust["summary"]["final_metrics"].items():
        assert same_bits(result.final_metrics[name], value), name


@pytest.mark.parametrize("solver", sorted(META_SOLVERS))
def test_meta_learning_iterates_equal_the_rust_run(solver, rust_solve):
    params = [(k, v) for k, v in META.items()]
    code, rust = rust_solve("meta_linear", solver, problem_params=params, max_iters=15, seed=2)
    assert code == 0, rust
    problem = bilevel.builtin("meta_linear", **META)
    result = bilevel.solve(problem, solver, max_iters=15, seed=2)
    assert result.status == rust["summary"]["status"]
    assert same_bits(result.x, rust["x"])
    assert same_bits(result.y, rust["y"])


def test_solver_parameters_reach_rust_unchanged(rust_solve):
    # A schedule table and a plain number, as Python values and as command-line TOML.
    code, rust = rust_solve(
        "quadratic", "soba", problem_params=list(QUADRATIC.items()),
        params=[("batch_size", 7), ("outer_lr", "{ kind = \"inv_power\", c = 0.3, a = 0.4 }"),
                ("inner_lr", 0.25)],
        max_iters=40, seed=11)
    assert code == 0, rust
    result = bilevel.solve(bilevel.Quadratic(**QUADRATIC), "soba", max_iters=40, seed=11,
                           batch_size=np.int64(7), outer_lr={"kind": "inv_power", "c": 0.3, "a": 0.4},
                           inner_lr=np.float64(0.25))
    assert same_bits(result.x, rust["x"])
    assert result.params["batch_size"] == 7


def test_same_seed_same_bits_other_seed_other_iterate():
    problem = bilevel.Quadratic(**QUADRATIC)
    a = bilevel.solve(problem, "saba", max_iters=30, seed=1)
    b = bilevel.solve(problem, "saba", max_iters=30, seed=1)
    c = bilevel.solve(problem, "saba", max_iters=30, seed=2)
    assert same_bits(a.x, b.x)
    assert not np.array_equal(a.x, c.x)
