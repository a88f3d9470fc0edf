"""Bad arguments raise ValueError or TypeError naming the argument."""

import numpy as np
import pytest

import bilevel

X = np.random.default_rng(0).normal(size=(20, 3))
Y = np.where(X[:, 0] > 0, 1.0, -1.0)


@pytest.fixture(scope="module")
def quadratic():
    return bilevel.Quadratic(dim_x=3, dim_y=2, n_outer=10, n_inner=10)


def test_unknown_solver(quadratic):
    with pytest.raises(ValueError, match=r"unknown solver 'sobaa'.*soba"):
        bilevel.solve(quadratic, "sobaa", max_iters=5)


def test_unknown_solver_parameter_is_named(quadratic):
    with pytest.raises(ValueError, match=r"step_size.*'soba'.*batch_size"):
        bilevel.solve(quadratic, "soba", max_iters=5, step_size=0.1)


def test_invalid_solver_parameter_value_is_named(quadratic):
    with pytest.raises(ValueError, match="batch_size"):
        bilevel.solve(quadratic, "soba", max_iters=5, batch_size=0)


def test_no_budget(quadratic):
    with pytest.raises(ValueError, match="max_iters"):
        bilevel.solve(quadratic, "soba")


def test_budget_type(quadratic):
    with pytest.raises(TypeError, match="max_iters"):
        bilevel.solve(quadratic, "soba", max_iters=2.5)


def test_start_of_the_wrong_length(quadratic):
    with pytest.raises(ValueError, match=r"x0 has length 4, expected dim_x = 3"):
        bilevel.solve(quadratic, "soba", max_iters=5, x0=np.zeros(4))
    with pytest.raises(ValueError, match="y0"):
        bilevel.solve(quadratic, "soba", max_iters=5, y0=np.zeros(5))


def test_non_finite_start(quadratic):
    with pytest.raises(ValueError, match="x0 has 1 NaN"):
        bilevel.solve(quadratic, "soba", max_iters=5, x0=np.array([0.0, np.nan, 0.0]))


def test_problem_is_checked(quadratic):
    with pytest.raises(TypeError, match="problem must be a bilevel.Problem"):
        bilevel.solve("quadratic", "soba", max_iters=5)


def test_unknown_problem_parameter():
    with pytest.raises(ValueError, match=r"dimx.*dim_x"):
        bilevel.Quadratic(dimx=3)
    with pytest.raises(ValueError, match="unknown problem kind 'quadrat'"):
        bilevel.builtin("quadrat")


def test_invalid_problem_value():
    with pytest.raises(ValueError, match="mu"):
        bilevel.Quadratic(mu=-1.0)


def test_logreg_shapes_and_values_are_named():
    with pytest.raises(ValueError, match="y_train has 19 labels but X_train has 20 rows"):
        bilevel.LogRegHPO(X, Y[:19], X, Y)
    with pytest.raises(ValueError, match="X_val must be 2-dimensional"):
        bilevel.LogRegHPO(X, Y, X[:, 0], Y)
    bad = X.copy()
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="X_train has 1 NaN or infinite"):
        bilevel.LogRegHPO(bad, Y, X, Y)
    with pytest.raises(ValueError, match="features of the validation set"):
        bilevel.LogRegHPO(X, Y, X[:, :2], Y)
    with pytest.raises(ValueError, match="penalty"):
        bilevel.LogRegHPO(X, Y, X, Y, penalty="per_row")
    with pytest.raises(ValueError, match="X_test and y_test"):
        bilevel.LogRegHPO(X, Y, X, Y, X_test=X)


def test_dtypes_are_converted_or_refused():
    # int and float32 are converted to float64 (documented).
    problem = bilevel.LogRegHPO(X.astype(np.float32), Y.astype(np.int64), X, Y)
    assert problem.dim_x == 3
    with pytest.raises(TypeError, match="X_train must hold real numbers.*complex"):
        bilevel.LogRegHPO(X.astype(np.complex128), Y, X, Y)
    with pytest.raises(TypeError, match="y_val must hold real numbers"):
        bilevel.LogRegHPO(X, Y, X, np.array(["a"] * 20))


def test_custom_problem_arguments():
    class Obj:
        def value(self, x, y, batch):
            return 0.0

        def grad_x(self, x, y, batch):
            return np.zeros(2)

        def grad_y(self, x, y, batch):
            return np.zeros(2)

    with pytest.raises(TypeError, match="dim_x must be an int"):
        bilevel.CustomProblem(Obj(), Obj(), 2.0, 2)
    with pytest.raises(ValueError, match="n_inner must be >= 1"):
        bilevel.CustomProblem(Obj(), Obj(), 2, 2, n_inner=0)
    with pytest.raises(ValueError, match="x0 has length 3"):
        bilevel.CustomProblem(Obj(), Obj(), 2, 2, x0=np.zeros(3))


def test_missing_experiment_file(tmp_path):
    with pytest.raises((FileNotFoundError, ValueError), match="nope.toml"):
        bilevel.run_experiment(str(tmp_path / "nope.toml"), out=str(tmp_path / "out"))
